"""docker-compose.jsonnet, ./generate-docker-compose and the configs they carry.

Judged by the real tools: `docker-compose config -q` (Debian's docker-compose)
for the compose file, `promtool` for the Prometheus config and the dashboard's
queries, `nginx` for the front's config. There is no Docker engine here, so
nothing is started in containers; where the scripts call `docker`, a recording
fake stands in (tests/deploy/conftest.py).
"""

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time

import _jsonnet
import pytest
import requests

from tests.util import free_port

from .conftest import ROOT

JSONNET = ROOT / "docker-compose.jsonnet"
STREAMVAULT = ("downloader", "restreamer", "backfiller", "cutter")


def render(overrides=None):
    """docker-compose.jsonnet evaluated with some settings changed, as a dict.

    The image tag is one ./build would record, unless `overrides` says otherwise.
    """
    overrides = {"image_tag": "0123abc", **(overrides or {})}
    snippet = f"(import {json.dumps(str(JSONNET))}).with({json.dumps(overrides)})"
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
    (work / ".build-tag").write_text("0123abc\n")
    return work


def generate(checkout, env):
    return subprocess.run(
        [str(checkout / "generate-docker-compose")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_generate_writes_a_valid_compose_file(checkout, fake_docker):
    env, calls = fake_docker
    (checkout / "settings.jsonnet").write_text("{ node_name: 'east', ports: { http: 8080 } }\n")
    result = generate(checkout, env)
    assert result.returncode == 0, result.stderr
    assert "jsonnet from .venv" in result.stdout
    assert "settings from settings.jsonnet" in result.stdout
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
            "requirements.txt", "tools", "monitoring", ".venv", ".build-tag",
            "settings.jsonnet", "secrets",
        ]
    )  # fmt: skip
    # The settings and the tag ./build recorded reached the services.
    assert '"streamvault/cutter:0123abc"' in text
    assert '"8080:80"' in text and '- "east"' in text
    # The generated password is in 0600 files only, never in the compose file.
    password = (checkout / "secrets/db-password").read_text()
    assert len(password) >= 32
    dsn = (checkout / "secrets/db-dsn").read_text()
    assert dsn == f"host=postgres dbname=streamvault user=streamvault password={password}\n"
    for name in ("db-password", "db-dsn"):
        assert (checkout / "secrets" / name).stat().st_mode & 0o777 == 0o600
    assert password not in text
    # A second run keeps the password (the database was initialised with it).
    assert generate(checkout, env).returncode == 0
    assert (checkout / "secrets/db-password").read_text() == password


@pytest.mark.slow
def test_generate_falls_back_to_the_venv_when_the_jsonnet_image_cannot_be_built(
    checkout, fake_docker
):
    env, calls = fake_docker
    result = generate(checkout, dict(env, FAKE_DOCKER_ENGINE="up", FAKE_DOCKER_BUILD="fail"))
    assert result.returncode == 0, result.stderr
    assert "using .venv's jsonnet instead" in result.stderr
    assert "jsonnet from .venv" in result.stdout
    assert not [c for c in calls() if c[0] == "run"]
    compose_config_ok(checkout / "docker-compose.yml")


def test_generate_refuses_without_a_built_tag(checkout, fake_docker):
    env, _ = fake_docker
    (checkout / ".build-tag").unlink()
    result = generate(checkout, env)
    assert result.returncode != 0
    assert "run ./build, or set image_tag" in result.stderr
    assert not (checkout / "docker-compose.yml").exists()


def test_generate_keeps_the_old_files_on_error(checkout, fake_docker):
    env, _ = fake_docker
    (checkout / "docker-compose.yml").write_text("old\n")
    (checkout / "settings.jsonnet").write_text("{ image_tag: latest }\n")
    result = generate(checkout, env)
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
    result = generate(checkout, env)
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
    assert [r[r.index(image) + 1 :] for r in runs] == [
        ["docker-compose.jsonnet", "--yaml", "--with-json", '{"image_tag": "0123abc"}'],
        ["monitoring/dashboard.jsonnet"],
    ]
    text = (checkout / "docker-compose.yml").read_text()
    assert text.splitlines()[0].startswith("# Generated") and "services: {}" in text


def test_default_settings_give_a_whole_node_without_a_backfiller():
    compose = render()
    # No peers: nothing to backfill from, so no backfiller crash-looping.
    assert set(compose["services"]) == {
        "downloader", "restreamer", "cutter", "postgres", "nginx", "prometheus", "grafana",
    }  # fmt: skip
    for name in ("downloader", "restreamer", "cutter"):
        service = compose["services"][name]
        assert service["image"] == f"streamvault/{name}:0123abc"
        assert "/var/lib/streamvault/segments:/mnt/store" in service["volumes"]
        assert flag(service["command"], "--base-dir") == "/mnt/store"
        assert "--backdoor-socket" not in service["command"]  # off unless asked
        assert service["environment"]["STREAMVAULT_LOG_LEVEL"] == "INFO"
    for name, service in compose["services"].items():
        assert service["logging"] == {
            "driver": "json-file", "options": {"max-size": "50m", "max-file": "5"},
        }, name  # fmt: skip
    cutter = compose["services"]["cutter"]
    assert cutter["command"][0] == "run"
    # The DSN comes from a secret file: not in argv, not in the compose file.
    assert flag(cutter["command"], "--db-file") == "/run/secrets/db_dsn"
    assert "--db" not in cutter["command"] and cutter["secrets"] == ["db_dsn"]
    assert cutter["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert "ports" not in postgres
    assert compose["secrets"] == {
        "db_dsn": {"file": "./secrets/db-dsn"}, "db_password": {"file": "./secrets/db-password"},
    }  # fmt: skip
    assert "backfiller" not in unescape(
        compose["services"]["prometheus"]["environment"]["PROMETHEUS_CONFIG"]
    )


@pytest.mark.parametrize(
    "setting, published",
    [(5432, "127.0.0.1:5432:5432"), ("10.0.0.5:6543", "10.0.0.5:6543:5432")],
)
def test_the_database_is_published_where_the_operator_says(setting, published):
    postgres = render({"ports": {"postgres": setting}})["services"]["postgres"]
    assert postgres["ports"] == [published]


@pytest.mark.parametrize("setting", ["password", "dsn"])
def test_a_secret_in_the_settings_is_refused(setting):
    with pytest.raises(RuntimeError, match=f"database.{setting} is not a setting"):
        render({"database": {setting: "change-me"}})


def test_a_peer_file_is_mounted_by_its_directory():
    compose = render({"peer_file": "/etc/sv/peers.txt"})
    backfiller = compose["services"]["backfiller"]
    assert "/etc/sv:/etc/streamvault/peers:ro" in backfiller["volumes"]
    assert flag(backfiller["command"], "--node-file") == "/etc/streamvault/peers/peers.txt"
    assert flag(backfiller["command"], "--node-name") == "node1"
    assert "--nodes" not in backfiller["command"]


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
            "backdoor": True,
            "editor_limits": {"jobs_per_day": 6},
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
        assert flag(services[name]["command"], "--backdoor-socket") == "/tmp/backdoor.sock"
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
    assert flag(command, "--editor-jobs-per-day") == "6"
    assert "--editor-jobs-per-minute" not in command
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
    compose = render({"database": {"bundled": False, "dsn_file": "/etc/sv/db-dsn"}})
    services = compose["services"]
    assert "postgres" not in services
    assert flag(services["cutter"]["command"], "--db-file") == "/run/secrets/db_dsn"
    assert compose["secrets"] == {"db_dsn": {"file": "/etc/sv/db-dsn"}}
    assert "depends_on" not in services["cutter"]


def test_a_cutter_without_a_database_is_refused():
    with pytest.raises(RuntimeError, match="database: set dsn_file"):
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


def nginx_conf(compose, port, store, upstream):
    """The front's config as the container writes it, on a local port, store and upstream.

    Both the restreamer and the cutter become `upstream`, a local HTTP server that
    answers with the path it was asked for.
    """
    conf = unescape(compose["services"]["nginx"]["environment"]["NGINX_CONF"])
    assert "listen 80;" in conf and "alias /mnt/store/$segment;" in conf
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("alias /mnt/store/", f"alias {store}/")
    conf = conf.replace("restreamer:8000;", f"127.0.0.1:{upstream};")
    conf = conf.replace("cutter:8003;", f"127.0.0.1:{upstream};")
    if os.geteuid() == 0:  # workers would run as nobody, who cannot read tmp_path
        conf = "user root;\n" + conf
    return conf


@pytest.fixture
def upstream():
    """A local HTTP server standing in for the restreamer and the cutter.

    Answers every request with `upstream METHOD PATH`; yields its port.
    """

    class Echo(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = f"upstream {self.command} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def start_nginx(tmp_path, make_conf):
    """nginx on 127.0.0.1 with the config `make_conf(port)`, after `nginx -t`; (proc, base)."""
    # A port probed free may be taken by another test run before nginx binds it:
    # try a few.
    for _attempt in range(5):
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(make_conf(port))
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
                requests.get(base + "/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        if proc.poll() is None:
            return proc, base
    pytest.fail("nginx did not start: " + proc.stderr.read().decode())


HASH = "A" * 43


def test_front_door_serves_only_what_peers_and_the_public_need(tmp_path, upstream):
    store = tmp_path / "store"
    hour = store / "desertbus" / "source" / "2026-11-28T13"
    hour.mkdir(parents=True)
    name = f"59:42.000000-6.000-full-{HASH}.ts"
    (hour / name).write_bytes(b"\x47" * 188 * 10)
    (hour / f"59:50.000000-2.000-full-{HASH}.mp4").write_bytes(b"mp4")
    (hour / "59:48.000000-6.000-temp-xyz.ts").write_bytes(b"half")
    (hour / ".hidden.ts").write_bytes(b"secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"outside the store")
    (hour / f"00:00.000000-6.000-full-{HASH}.ts").symlink_to(outside / "secret.txt")
    (store / "desertbus" / "evil").symlink_to(outside)
    compose = render()
    proc, base = start_nginx(tmp_path, lambda port: nginx_conf(compose, port, store, upstream))
    try:
        response = requests.get(f"{base}/segments/desertbus/source/2026-11-28T13/{name}", timeout=5)
        assert response.status_code == 200
        assert response.content == b"\x47" * 188 * 10
        assert response.headers["Content-Type"] == "video/mp2t"
        assert "immutable" in response.headers["Cache-Control"]
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        hour_url = f"{base}/segments/desertbus/source/2026-11-28T13"
        mp4 = requests.get(f"{hour_url}/59:50.000000-2.000-full-{HASH}.mp4", timeout=5)
        assert mp4.status_code == 200 and mp4.headers["Content-Type"] == "video/mp4"
        # fMP4 playlists send players to byte ranges of the files (the media part).
        part = requests.get(mp4.url, headers={"Range": "bytes=1-"}, timeout=5)
        assert part.status_code == 206 and part.content == b"p4"
        # Only segment names under CHANNEL/QUALITY/HOUR: never temp or dot files,
        # directories, anything outside the store, or a symlink out of it.
        refused = [
            f"{hour_url}/59:48.000000-6.000-temp-xyz.ts",
            f"{hour_url}/.hidden.ts",
            f"{hour_url}/",
            f"{base}/segments/desertbus/source",
            f"{base}/segments/desertbus/%2e%2e/%2e%2e/%2e%2e/nginx.conf",
            f"{hour_url}/00:00.000000-6.000-full-{HASH}.ts",
            f"{base}/segments/desertbus/evil/2026-11-28T13/{name}",
            f"{base}/segments/desertbus/evil/secret.txt",
        ]
        for url in refused:
            response = requests.get(url, timeout=5)
            assert response.status_code in (400, 403, 404), url
            assert b"outside the store" not in response.content and b"alias" not in response.content
        # The public routes reach the services; nothing else does, /metrics above all.
        for path, expected in [
            ("/", "GET /"),
            ("/editor/", "GET /editor/"),
            ("/files/desertbus", "GET /files/desertbus"),
            ("/playlist/desertbus.m3u8", "GET /playlist/desertbus.m3u8"),
            (
                "/cut/desertbus/source.ts?start=a&end=b",
                "GET /cut/desertbus/source.ts?start=a&end=b",
            ),
            ("/jobs", "GET /jobs"),
            ("/locations", "GET /locations"),
        ]:
            response = requests.get(base + path, timeout=5)
            assert response.text == f"upstream {expected}", path
        assert (
            requests.post(base + "/jobs/3/cancel", timeout=5).text == "upstream POST /jobs/3/cancel"
        )
        for path in ["/metrics", "/metrics/", "/jobsx", "/debug", "/files-x", "/backdoor"]:
            response = requests.get(base + path, timeout=5)
            assert response.status_code == 404, path
            assert not response.text.startswith("upstream"), path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_front_door_takes_a_certificate(tmp_path, upstream):
    """With tls, HTTPS serves (the certificate given) and plain HTTP only redirects."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    compose = render(
        {
            "tls": {"certificate": "/etc/ssl/sv.pem", "key": "/etc/ssl/sv.key"},
            "ports": {"https": 8443},
        }
    )
    nginx = compose["services"]["nginx"]
    assert nginx["ports"] == ["80:80", "8443:443"]
    assert "/etc/ssl/sv.pem:/etc/streamvault/tls/cert.pem:ro" in nginx["volumes"]
    assert "/etc/ssl/sv.key:/etc/streamvault/tls/key.pem:ro" in nginx["volumes"]
    store = tmp_path / "store"
    store.mkdir()
    ports = {}

    def make_conf(port):
        https = free_port()
        ports["https"] = https
        conf = nginx_conf_tls(compose, port, https, store, upstream)
        return conf.replace("/etc/streamvault/tls/cert.pem", str(cert)).replace(
            "/etc/streamvault/tls/key.pem", str(key)
        )

    proc, base = start_nginx(tmp_path, make_conf)
    try:
        redirect = requests.get(base + "/files", timeout=5, allow_redirects=False)
        assert redirect.status_code == 301
        assert redirect.headers["Location"].startswith("https://")
        response = requests.get(
            f"https://localhost:{ports['https']}/files", verify=str(cert), timeout=5
        )
        assert response.text == "upstream GET /files"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def nginx_conf_tls(compose, port, https, store, upstream):
    conf = nginx_conf(compose, port, store, upstream)
    assert "listen 443 ssl;" in conf
    return conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")


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
