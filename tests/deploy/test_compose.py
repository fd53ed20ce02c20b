"""docker-compose.jsonnet, ./generate-docker-compose and the configs they carry.

Judged by the real tools: `docker-compose config -q` (Debian's docker-compose)
for the compose file, `promtool` for the Prometheus config and the dashboard's
queries, `nginx` for the front's config. There is no Docker engine here, so
nothing is started in containers; where the scripts call `docker`, a recording
fake stands in (tests/deploy/conftest.py).
"""

import json
import os
import re
import shutil
import subprocess
import time

import _jsonnet
import pytest
import requests

from tests.util import free_port

from .conftest import ROOT

JSONNET = ROOT / "docker-compose.jsonnet"
STREAMVAULT = ("downloader", "restreamer", "backfiller", "cutter")


def render(overrides=None):
    """docker-compose.jsonnet evaluated with some settings changed, as a dict."""
    snippet = f"(import {json.dumps(str(JSONNET))}).with({json.dumps(overrides or {})})"
    return json.loads(_jsonnet.evaluate_snippet("test", snippet))


def unescape(value):
    """A compose string as the container sees it (compose turns `$$` into `$`)."""
    return value.replace("$$", "$")


def compose_config_ok(path):
    """Run `docker-compose config -q` on `path`; fail with its output unless clean."""
    result = subprocess.run(
        ["docker-compose", "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Warnings (e.g. an unescaped `$name` taken for a variable) count as failures.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def flag(command, name):
    """The value after `name` in a command line."""
    return command[command.index(name) + 1]


@pytest.fixture
def checkout(tmp_path):
    """The files ./generate-docker-compose needs, copied into a scratch checkout.

    Its .venv links to the real one, so the script finds the jsonnet module.
    """
    work = tmp_path / "checkout"
    (work / "tools").mkdir(parents=True)
    for name in ("generate-docker-compose", "docker-compose.jsonnet", "requirements.txt"):
        shutil.copy2(ROOT / name, work / name)
    for name in ("render_jsonnet.py", "jsonnet.Dockerfile"):
        shutil.copy2(ROOT / "tools" / name, work / "tools" / name)
    shutil.copytree(
        ROOT / "monitoring", work / "monitoring", ignore=shutil.ignore_patterns("generated")
    )
    (work / ".venv").symlink_to(ROOT / ".venv")
    return work


def test_generate_writes_a_valid_compose_file(checkout, fake_docker):
    env, calls = fake_docker
    result = subprocess.run(
        [str(checkout / "generate-docker-compose")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "jsonnet from .venv" in result.stdout
    text = (checkout / "docker-compose.yml").read_text()
    assert text.startswith("# Generated from docker-compose.jsonnet")
    assert "do not edit" in text.splitlines()[0]
    compose_config_ok(checkout / "docker-compose.yml")
    dashboard = json.loads((checkout / "monitoring/generated/streamvault.json").read_text())
    assert dashboard["uid"] == "streamvault" and dashboard["panels"]
    # Asked the engine, found none, so never tried to run anything in Docker.
    assert [c[0] for c in calls()] == ["info"]
    assert sorted(os.listdir(checkout)) == sorted(
        [
            "generate-docker-compose", "docker-compose.jsonnet", "docker-compose.yml",
            "requirements.txt", "tools", "monitoring", ".venv",
        ]
    )  # fmt: skip


def test_generate_keeps_the_old_files_on_error(checkout, fake_docker):
    env, _ = fake_docker
    (checkout / "docker-compose.yml").write_text("old\n")
    jsonnet = checkout / "docker-compose.jsonnet"
    jsonnet.write_text(jsonnet.read_text().replace("image_tag: 'latest',", "image_tag: latest,"))
    result = subprocess.run(
        [str(checkout / "generate-docker-compose")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Unknown variable: latest" in result.stderr
    assert (checkout / "docker-compose.yml").read_text() == "old\n"
    assert not (checkout / "monitoring/generated/streamvault.json").exists()
    leftovers = [n for n in os.listdir(checkout) if n.startswith(".docker-compose")]
    leftovers += os.listdir(checkout / "monitoring/generated")
    assert leftovers == []


def test_generate_renders_in_docker_when_an_engine_answers(checkout, fake_docker):
    env, calls = fake_docker
    env = dict(env, FAKE_DOCKER_ENGINE="up", FAKE_DOCKER_OUTPUT="services: {}")
    result = subprocess.run(
        [str(checkout / "generate-docker-compose")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    version = re.search(r"^jsonnet==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)[1]
    image = f"streamvault/jsonnet:{version}"
    by_command = {}
    for call in calls():
        by_command.setdefault(call[0], []).append(call)
    # The image is built once, with the pinned jsonnet, then runs each render.
    (build,) = by_command["build"]
    assert image in build and f"JSONNET_VERSION={version}" in build
    runs = by_command["run"]
    assert len(runs) == 2
    for run in runs:
        assert f"{checkout}:/src:ro" in run and image in run
    assert [r[-1] for r in runs] == ["--yaml", "monitoring/dashboard.jsonnet"]
    text = (checkout / "docker-compose.yml").read_text()
    assert text.splitlines()[0].startswith("# Generated") and "services: {}" in text


def test_default_settings_give_a_whole_node():
    compose = render()
    assert set(compose["services"]) == {
        *STREAMVAULT, "postgres", "nginx", "prometheus", "grafana",
    }  # fmt: skip
    for name in STREAMVAULT:
        service = compose["services"][name]
        assert service["image"] == f"streamvault/{name}:latest"
        assert "/var/lib/streamvault/segments:/mnt/store" in service["volumes"]
        assert flag(service["command"], "--base-dir") == "/mnt/store"
        assert flag(service["command"], "--backdoor-port") == "1234"
        assert service["environment"]["STREAMVAULT_LOG_LEVEL"] == "INFO"
    cutter = compose["services"]["cutter"]["command"]
    assert cutter[0] == "run"
    assert "host=postgres" in flag(cutter, "--db")
    assert compose["services"]["cutter"]["depends_on"] == ["postgres"]


def test_settings_reach_the_services(tmp_path):
    compose = render(
        {
            "image_prefix": "registry.example.org/sv-",
            "image_tag": "3f9c2ab",
            "node_name": "east",
            "public_url": "https://east.example.org",
            "channels": ["desertbus", "test=https://origin.example.org/live/master.m3u8"],
            "qualities": ["source", "720p", "360p"],
            "store_path": "/srv/segments",
            "peers": ["https://west.example.org", "https://north.example.org"],
            "backfill_start": 6,
            "backdoor_port": 0,
            "log_level": "DEBUG",
            "ports": {"http": 8080, "grafana": None},
            "upload_locations": {
                "desertbus": {"type": "youtube", "credentials": "/etc/sv/yt.json"},
            },
        }
    )
    services = compose["services"]
    assert services["restreamer"]["image"] == "registry.example.org/sv-restreamer:3f9c2ab"
    downloader = services["downloader"]["command"]
    assert downloader[:2] == ["desertbus", "test=https://origin.example.org/live/master.m3u8"]
    assert flag(downloader, "--qualities") == "source,720p,360p"
    backfiller = services["backfiller"]["command"]
    assert flag(backfiller, "--channels") == "desertbus,test"
    assert flag(backfiller, "--qualities") == "source,720p,360p"
    assert flag(backfiller, "--nodes") == "https://west.example.org,https://north.example.org"
    assert flag(backfiller, "--start") == "6"
    for name in STREAMVAULT:
        assert flag(services[name]["command"], "--backdoor-port") == "0"
        assert services[name]["environment"]["STREAMVAULT_LOG_LEVEL"] == "DEBUG"
        assert "/srv/segments:/mnt/store" in services[name]["volumes"]
    cutter = services["cutter"]
    assert flag(cutter["command"], "--name") == "east"
    command = cutter["command"]
    locations = [command[i + 1] for i, arg in enumerate(command) if arg == "--location"]
    assert locations == [
        "desertbus=youtube:/etc/streamvault/desertbus.json",
        "local=local:/mnt/uploads/local,url_prefix=https://east.example.org/uploads/local/",
    ]
    assert "/etc/sv/yt.json:/etc/streamvault/desertbus.json:ro" in cutter["volumes"]
    assert services["nginx"]["ports"] == ["8080:80"]
    assert "/srv/segments:/mnt/store:ro" in services["nginx"]["volumes"]
    assert "ports" not in services["grafana"]
    prometheus = unescape(services["prometheus"]["environment"]["PROMETHEUS_CONFIG"])
    assert prometheus.count("node: east") + prometheus.count('"node": "east"') == 4

    path = tmp_path / "docker-compose.yml"
    path.write_text(json.dumps(compose))
    compose_config_ok(path)


def test_disabling_a_service_removes_it(tmp_path):
    compose = render(
        {
            "enabled": {"backfiller": False, "grafana": False, "cutter": False},
            "database": {"bundled": False},
        }
    )
    services = compose["services"]
    assert set(services) == {"downloader", "restreamer", "nginx", "prometheus"}
    assert compose["volumes"] == {"prometheus": {}}
    prometheus = unescape(services["prometheus"]["environment"]["PROMETHEUS_CONFIG"])
    assert "backfiller" not in prometheus and "cutter" not in prometheus
    assert services["nginx"]["depends_on"] == ["restreamer"]
    path = tmp_path / "docker-compose.yml"
    path.write_text(json.dumps(compose))
    compose_config_ok(path)


def test_an_external_database_replaces_the_bundled_one():
    dsn = "host=db.example.org dbname=streamvault user=sv password=secret"
    services = render({"database": {"bundled": False, "dsn": dsn}})["services"]
    assert "postgres" not in services
    assert flag(services["cutter"]["command"], "--db") == dsn
    assert "depends_on" not in services["cutter"]


def test_a_cutter_without_a_database_is_refused():
    with pytest.raises(RuntimeError, match="database: set dsn"):
        render({"database": {"bundled": False}})


def test_prometheus_config_passes_promtool(tmp_path):
    compose = render({"peers": ["http://peer"]})
    config = tmp_path / "prometheus.yml"
    config.write_text(
        unescape(compose["services"]["prometheus"]["environment"]["PROMETHEUS_CONFIG"])
    )
    result = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name, port in [("downloader", 8001), ("restreamer", 8000), ("backfiller", 8002), ("cutter", 8003)]:  # fmt: skip
        assert f"{name}:{port}" in config.read_text()


def nginx_conf(compose, port, store):
    """The front's config as the container writes it, moved to a local port and store."""
    conf = unescape(compose["services"]["nginx"]["environment"]["NGINX_CONF"])
    assert "listen 80;" in conf and "alias /mnt/store/;" in conf
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("alias /mnt/store/;", f"alias {store}/;")
    if os.geteuid() == 0:  # workers would run as nobody, who cannot read tmp_path
        conf = "user root;\n" + conf
    return conf


def test_nginx_front_serves_segments_from_the_store(tmp_path):
    store = tmp_path / "store"
    hour = store / "desertbus" / "source" / "2026-11-28T13"
    hour.mkdir(parents=True)
    name = "59:42.000000-6.000-full-AAAA.ts"
    (hour / name).write_bytes(b"\x47" * 188 * 10)
    mp4_name = "59:48.000000-2.000-full-AAAA.mp4"
    (hour / mp4_name).write_bytes(b"init" * 10 + b"media" * 20)
    (hour / "59:48.000000-6.000-temp-xyz.ts").write_bytes(b"half")
    (hour / ".hidden.ts").write_bytes(b"secret")
    compose = render()

    # A port probed free may be taken by another test run before nginx binds it:
    # try a few.
    for _attempt in range(5):
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(nginx_conf(compose, port, store))
        check = subprocess.run(
            ["nginx", "-t", "-c", str(conf), "-e", "stderr", "-g", f"pid {tmp_path}/nginx.pid;"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-e", "stderr", "-g", f"daemon off; pid {tmp_path}/nginx.pid;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                requests.get(base + "/segments/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        pytest.fail("nginx did not start: " + proc.stderr.read().decode())
    try:
        response = requests.get(f"{base}/segments/desertbus/source/2026-11-28T13/{name}", timeout=5)
        assert response.status_code == 200
        assert response.content == b"\x47" * 188 * 10
        assert response.headers["Content-Type"] == "video/mp2t"
        assert "immutable" in response.headers["Cache-Control"]
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        hour_url = f"{base}/segments/desertbus/source/2026-11-28T13"
        # fMP4 playlists point players at byte ranges of the files: the media part.
        part = requests.get(f"{hour_url}/{mp4_name}", headers={"Range": "bytes=40-"}, timeout=5)
        assert part.status_code == 206 and part.content == b"media" * 20
        assert part.headers["Content-Type"] == "video/mp4"
        assert (
            requests.get(f"{hour_url}/59:48.000000-6.000-temp-xyz.ts", timeout=5).status_code == 404
        )
        assert requests.get(f"{hour_url}/.hidden.ts", timeout=5).status_code == 403
        traversal = requests.get(
            f"{base}/segments/desertbus/%2e%2e/%2e%2e/%2e%2e/nginx.conf", timeout=5
        )
        assert traversal.status_code in (400, 403, 404) and b"alias" not in traversal.content
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_queries_pass_promtool(tmp_path):
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    # Grafana's variables are not PromQL: give them values as Grafana would.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_exprs():
    """Every PromQL query of the dashboard, with Grafana's variables filled in."""
    dashboard = json.loads(_jsonnet.evaluate_file(str(ROOT / "monitoring/dashboard.jsonnet")))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    values = {"$__rate_interval": "1m", "$node": ".*", "$channel": ".*"}
    for variable, value in values.items():
        exprs = [e.replace(variable, value) for e in exprs]
    assert not any("$" in e for e in exprs), exprs
    return exprs
