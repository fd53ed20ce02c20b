"""The Docker deployment, end to end: what an operator does, against real images.

Builds the base image and the third-party stand-ins when missing (no registry
answers here: tests/deploy/standins/README.md), runs `./build`, writes settings
for a node recording the test stream (started on the host, on Docker's bridge
address so containers reach it), runs `./generate-docker-compose` and
`docker compose up -d`, then checks through the front door what peers, editors
and the public see, that Prometheus scrapes every service, that the backdoor
answers through `docker compose exec`, that a second node backfills from the
first, and that `docker compose stop` ends every container cleanly. Everything
it started or wrote is removed at the end (the images stay: they are the layer
cache of the next build).

Slow (minutes; a first build on a fresh machine longer). Skipped, saying why,
where no Docker engine runs (tools/setup --docker starts one).
"""

import datetime
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from common.segments import parse_segment_path
from devtools.ports import free_ports
from devtools.teststream import TestStream

from .conftest import ROOT

# A first run on a fresh machine builds every image from nothing (about ten
# minutes here), far beyond the suite's per-test default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

STANDINS = pathlib.Path(__file__).parent / "standins"
BASE_IMAGE = "debian:bookworm-slim"
# Third-party images of the compose file -> the stand-in's Dockerfile.
THIRD_PARTY = {
    "postgres:15": "postgres.Dockerfile",
    "nginx:1.27": "nginx.Dockerfile",
    "prom/prometheus:v2.55.1": "prometheus.Dockerfile",
}
SERVICE_UID = 10001
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Generous: the machine is shared; every wait ends as soon as its condition holds.
UP_TIMEOUT = 300  # seconds for a node to record, serve and be scraped
JOB_TIMEOUT = 180
BACKFILL_TIMEOUT = 420  # the backfiller leaves segments younger than 120 s alone
STOP_TIMEOUT = 30  # `docker compose stop` of a whole node


def run(command, timeout=600, check=True, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(what, check, timeout, interval=2):
    """Call `check` until it returns something true; return that, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError) as e:
            last = e
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def compose_command():
    """`docker compose` (v2) where it works, else Debian's `docker-compose` (v1)."""
    if run(["docker", "compose", "version"], check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed (tools/setup)")


def make_base_image(work):
    """debian:bookworm-slim from Debian's archive, carrying the machine's CA bundle."""
    if run(["docker", "image", "inspect", BASE_IMAGE], check=False).returncode == 0:
        return
    if not shutil.which("debootstrap"):
        pytest.skip("no debootstrap to make the base image (tools/setup installs it)")
    root = work / "rootfs"
    run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), "http://deb.debian.org/debian"],
        timeout=900,
    )
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(root / junk, ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    # Builds reach PyPI and npm through this machine's CA bundle (minbase has
    # no ca-certificates, so not always an /etc/ssl either).
    (root / "etc/ssl").mkdir(parents=True, exist_ok=True)
    shutil.copy(CA_BUNDLE, root / "etc/ssl/host-ca-bundle.crt")
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    run(
        [
            "docker", "import",
            "-c", "ENV PIP_CERT=/etc/ssl/host-ca-bundle.crt",
            "-c", "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca-bundle.crt",
            "-c", 'CMD ["bash"]',
            "-", BASE_IMAGE,
        ],
        stdin=tar.stdout,
    )  # fmt: skip
    tar.wait()
    shutil.rmtree(root)


def make_standins():
    for image, dockerfile in THIRD_PARTY.items():
        if run(["docker", "image", "inspect", image], check=False).returncode != 0:
            run(["docker", "build", "-q", "-f", dockerfile, "-t", image, "."], cwd=STANDINS)


def image_size(image):
    size = run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout.strip()
    return int(size) / 1e6


def bridge_gateway():
    """The host's address on Docker's default bridge: containers reach the host there."""
    out = run(["docker", "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"]).stdout
    config = json.loads(out)[0]
    if config.get("Gateway"):
        return config["Gateway"]
    # Older engines leave it out of the config: the bridge device has it.
    out = run(["ip", "-4", "-o", "addr", "show", "dev", "docker0"]).stdout
    return out.split(" inet ")[1].split("/")[0]


class Node:
    """One compose node in its own directory (a copy of the deployment files)."""

    FILES = ["generate-docker-compose", "docker-compose.jsonnet", "requirements.txt"]

    def __init__(self, work, name, compose, tag, settings):
        self.dir = work / name
        self.name = name
        self.project = f"svtest-{name}-{os.getpid()}"
        self.compose = compose
        (self.dir / "tools").mkdir(parents=True)
        for file in self.FILES:
            shutil.copy2(ROOT / file, self.dir / file)
        for file in ("render_jsonnet.py", "jsonnet.Dockerfile"):
            shutil.copy2(ROOT / "tools" / file, self.dir / "tools" / file)
        shutil.copytree(
            ROOT / "monitoring", self.dir / "monitoring", ignore=shutil.ignore_patterns("generated")
        )
        (self.dir / ".venv").symlink_to(ROOT / ".venv")
        (self.dir / ".build-tag").write_text(f"{tag}\n")
        self.store = self.dir / "store"
        self.uploads = self.dir / "uploads"
        for path in (self.store, self.uploads):
            path.mkdir()
            os.chown(path, SERVICE_UID, SERVICE_UID)
        settings = {
            "node_name": name,
            "store_path": str(self.store),
            "upload_locations": {"local": {"type": "local", "path": str(self.uploads)}},
            "database": {"data_path": str(self.dir / "postgres")},
            **settings,
        }
        (self.dir / "settings.jsonnet").write_text(json.dumps(settings, indent=2))

    def generate(self):
        return run([str(self.dir / "generate-docker-compose")], timeout=600)

    def __call__(self, *args, **kwargs):
        return run([*self.compose, "-p", self.project, *args], cwd=self.dir, **kwargs)

    def segments(self, channel="test", quality="source"):
        """Every segment of the host store for `channel`/`quality`, by start."""
        base = self.store / channel / quality
        found = []
        if base.is_dir():
            for hour in sorted(base.iterdir()):
                for path in hour.iterdir():
                    try:
                        info = parse_segment_path(str(path))
                    except ValueError:
                        continue
                    if info.type != "temp":
                        found.append(info)
        return sorted(found, key=lambda s: s.start)

    def down(self):
        self("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False, timeout=120)


def name_of(info):
    return os.path.basename(info.path)


def gaps(segments):
    """Holes between consecutive segments (more than 10 ms apart), as (end, next start)."""
    tolerance = datetime.timedelta(milliseconds=10)
    return [
        (a.start + a.duration, b.start)
        for a, b in zip(segments, segments[1:], strict=False)
        if b.start - (a.start + a.duration) > tolerance
    ]


def ffprobe_clean(path):
    """ffprobe decodes every packet of `path` without a word of complaint; its duration."""
    result = run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        timeout=60,
    )
    assert result.stderr.strip() == "", result.stderr
    decode = run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], timeout=120)
    assert decode.stderr.strip() == "", decode.stderr
    return float(json.loads(result.stdout)["format"]["duration"])


@pytest.fixture(scope="module")
def work():
    if shutil.which("docker") is None or run(["docker", "info"], check=False).returncode != 0:
        pytest.skip("no Docker engine answers (tools/setup --docker starts one, as root)")
    path = pathlib.Path(tempfile.mkdtemp(prefix="svtest-docker-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_compose_node_records_serves_cuts_and_is_replicated(work):
    compose = compose_command()
    figures = {}

    # --- images: the base, the stand-ins, then ./build as an operator runs it ---
    started = time.monotonic()
    make_base_image(work)
    make_standins()
    figures["base and stand-ins (s)"] = time.monotonic() - started
    # ./build records its tag in the checkout: put back what was there.
    build_tag_file = ROOT / ".build-tag"
    old_tag = build_tag_file.read_text() if build_tag_file.exists() else None
    started = time.monotonic()
    try:
        build = run([str(ROOT / "build")], timeout=1800, cwd=ROOT)
        tag = build_tag_file.read_text().strip()
    finally:
        if old_tag is None:
            build_tag_file.unlink(missing_ok=True)
        else:
            build_tag_file.write_text(old_tag)
    figures["./build (s)"] = time.monotonic() - started
    assert f"image tag {tag}" in build.stdout
    for service in ("downloader", "restreamer", "backfiller", "cutter"):
        figures[f"image {service} (MB)"] = image_size(f"streamvault/{service}:{tag}")

    gateway = bridge_gateway()
    http1, prom1, http2 = free_ports(3)
    stream = TestStream(work / "stream", host=gateway, qualities=("source",))
    nodes = []
    try:
        stream.start()
        node1 = Node(
            work,
            "node1",
            compose,
            tag,
            {
                "public_url": f"http://127.0.0.1:{http1}",
                "channels": [f"test={stream.url}"],
                "qualities": ["source"],
                "ports": {"http": http1, "prometheus": prom1, "grafana": None},
                "backdoor": True,
                "enabled": {"grafana": False},
            },
        )
        nodes.append(node1)
        generated = node1.generate()
        assert "secrets/db-password" in generated.stdout
        text = (node1.dir / "docker-compose.yml").read_text()
        assert (node1.dir / "secrets/db-password").read_text() not in text
        assert "grafana" not in text  # disabled: compose starts without it

        started = time.monotonic()
        node1("up", "-d", timeout=600)
        base = f"http://127.0.0.1:{http1}"
        wait_for("the front door", lambda: requests.get(f"{base}/files", timeout=5).ok, UP_TIMEOUT)
        figures["node1 up to front door answering (s)"] = time.monotonic() - started

        # A second node, backfilling from the first through its front door; it
        # starts now because the backfiller leaves the newest two minutes alone.
        node2 = Node(
            work,
            "node2",
            compose,
            tag,
            {
                "public_url": f"http://127.0.0.1:{http2}",
                "channels": ["test"],
                "qualities": ["source"],
                "peers": [f"http://{gateway}:{http1}"],
                "ports": {"http": http2, "prometheus": None, "grafana": None},
                "database": {"bundled": False},
                "enabled": {
                    "downloader": False, "cutter": False, "prometheus": False, "grafana": False,
                },
            },
        )  # fmt: skip
        nodes.append(node2)
        node2.generate()
        node2("up", "-d", timeout=600)

        # --- recording: segments on the host store, no gaps ---
        segments = wait_for(
            "10 segments in node1's store",
            lambda: len(node1.segments()) >= 10 and node1.segments(),
            UP_TIMEOUT,
        )
        assert gaps(segments) == []
        for info in segments:
            assert os.stat(info.path).st_uid == SERVICE_UID

        # --- the front door: listings, playlists, segments, cuts ---
        assert "test" in requests.get(f"{base}/files", timeout=10).json()
        hour = segments[-1].hour
        names = requests.get(f"{base}/files/test/source/{hour}", timeout=10).json()
        assert {name_of(s) for s in segments if s.hour == hour} <= set(names)
        playlist = requests.get(f"{base}/playlist/test/source.m3u8", timeout=10)
        assert playlist.status_code == 200 and playlist.text.startswith("#EXTM3U")
        first = segments[-8]
        segment = requests.get(
            f"{base}/segments/test/source/{first.hour}/{name_of(first)}", timeout=10
        )
        assert segment.status_code == 200 and segment.headers["Content-Type"] == "video/mp2t"
        start = first.start + datetime.timedelta(seconds=0.5)
        end = start + datetime.timedelta(seconds=4)
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
        cut = requests.get(
            f"{base}/cut/test/source.ts",
            params={"start": start.strftime(fmt), "end": end.strftime(fmt)},
            timeout=120,
        )
        assert cut.status_code == 200, cut.text
        (work / "cut.ts").write_bytes(cut.content)
        assert abs(ffprobe_clean(work / "cut.ts") - 4) < 0.2

        # What is not public: /metrics, and a link out of the store.
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 404
        link = (
            node1.store / "test" / "source" / first.hour / f"00:00.000000-2.000-full-{'A' * 43}.ts"
        )
        link.symlink_to("/etc/passwd")
        evil = requests.get(f"{base}/segments/test/source/{first.hour}/{link.name}", timeout=10)
        assert evil.status_code in (403, 404) and b"root:" not in evil.content
        link.unlink()

        # --- a job through the front door, to DONE, its video downloadable ---
        job = {
            "channel": "test",
            "quality": "source",
            "start": start.strftime(fmt),
            "end": end.strftime(fmt),
            "title": "docker test",
            "upload_location": "local",
        }
        # Anonymous changes are refused; an editor the operator added signs in.
        assert requests.post(f"{base}/jobs", json=job, timeout=30).status_code == 401
        token = node1(
            "exec", "-T", "cutter", "python", "-m", "cutter", "editors", "add",
            "--db-file", "/run/secrets/db_dsn", "tester", timeout=60,
        ).stdout.strip()  # fmt: skip
        editor = requests.Session()
        signed_in = editor.post(f"{base}/session", json={"token": token}, timeout=30)
        assert signed_in.status_code == 200, signed_in.text
        submitted = editor.post(f"{base}/jobs", json=job, timeout=30)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        job = wait_for(
            f"job {job_id} DONE",
            lambda: (
                (j := editor.get(f"{base}/jobs/{job_id}", timeout=10).json())["state"] == "DONE"
                and j
            ),
            JOB_TIMEOUT,
        )
        video = requests.get(job["video_link"], timeout=60)
        assert video.status_code == 200
        (work / "video.ts").write_bytes(video.content)
        assert abs(ffprobe_clean(work / "video.ts") - 4) < 0.2

        # --- Prometheus scrapes every service, inside the network ---
        def targets_up():
            targets = requests.get(f"http://127.0.0.1:{prom1}/api/v1/targets", timeout=10).json()[
                "data"
            ]["activeTargets"]
            jobs = {t["labels"]["job"]: t["health"] for t in targets}
            expected = {"downloader", "restreamer", "cutter"}
            return set(jobs) == expected and all(h == "up" for h in jobs.values()) and jobs

        wait_for("every Prometheus target up", targets_up, UP_TIMEOUT, interval=5)

        # --- the backdoor, reached only through docker compose exec ---
        backdoor = node1(
            "exec", "-T", "restreamer", "python", "-m", "common.backdoor", "/tmp/backdoor.sock",
            input="print(6 * 7)\n", timeout=60,
        )  # fmt: skip
        assert "42" in backdoor.stdout

        # --- the second node has what the first recorded ---
        def backfilled():
            theirs = {name_of(s) for s in node1.segments()[:5]}
            ours = {name_of(s) for s in node2.segments()}
            return theirs <= ours

        wait_for("node2 to backfill node1's first segments", backfilled, BACKFILL_TIMEOUT, 10)

        # --- stopping: every container exits 0, within seconds ---
        for node in nodes:
            containers = node("ps", "-q").stdout.split()
            assert containers
            started = time.monotonic()
            node("stop", "--timeout", "20", timeout=120)
            figures[f"{node.name} stop (s)"] = time.monotonic() - started
            assert figures[f"{node.name} stop (s)"] < STOP_TIMEOUT
            for container in containers:
                state = json.loads(
                    run(["docker", "inspect", "-f", "{{json .State}}", container]).stdout
                )
                assert state["ExitCode"] == 0, (container, state)
    finally:
        for node in nodes:
            node.down()
        stream.stop()
        print("\nDocker test figures:")
        for name, value in figures.items():
            print(f"  {name:45} {value:8.1f}")
