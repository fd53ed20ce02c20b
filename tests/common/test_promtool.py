"""`promtool check metrics` on each service's real /metrics, scraped from the
running service once it has done some work (so labelled series exist).

The restreamer's own app is checked route by route in tests/restreamer; here
the processes themselves: a restreamer serving a peer's store, a backfiller
copying from it (so the restreamer's listing and segment routes are hit), and
a downloader whose origin refuses connections (so its error series exist).
The cutter needs a database and is left to its own tests.
"""

import os
import shutil
import subprocess
import sys

import pytest
import requests

from tests.backfiller.peers import put_segment
from tests.restreamer.conftest import at
from tests.util import free_ports, wait_for

pytestmark = [
    pytest.mark.slow,  # runs services as processes
    pytest.mark.skipif(
        shutil.which("promtool") is None, reason="promtool is installed by tools/setup"
    ),
]

STARTUP_TIMEOUT = 30  # seconds, generous for a loaded machine


@pytest.fixture
def start(tmp_path):
    processes = []

    def start(name, *args):
        log = open(tmp_path / f"{name}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT
        )
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def scrape(port, needle):
    """The service's /metrics once it holds `needle` (a sample its work makes)."""

    def get():
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.RequestException:
            return None
        return text if needle in text else None

    return wait_for(get, timeout=STARTUP_TIMEOUT, what=f"{needle} on port {port}")


def check(text, what):
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert result.returncode == 0, f"{what}: {result.stdout.decode()}{result.stderr.decode()}"


def test_restreamer_and_backfiller_metrics_pass_promtool(tmp_path, start):
    peer = str(tmp_path / "peer")
    for second in range(0, 6, 2):
        # Real MPEG-TS of its duration: the backfiller refuses bodies that are not.
        put_segment(peer, "chan", "source", at(14, 0, second))
    restreamer_port, backfiller_port = free_ports(2)
    start(
        "restreamer", "restreamer", "--base-dir", peer, "--host", "127.0.0.1",
        "--port", str(restreamer_port),
    )  # fmt: skip
    start(
        "backfiller", "backfiller", "--base-dir", str(tmp_path / "node"),
        "--metrics-port", str(backfiller_port), "--channels", "chan",
        "--nodes", f"http://127.0.0.1:{restreamer_port}",
    )  # fmt: skip
    backfiller = scrape(backfiller_port, "backfiller_segments_total{")
    wait_for(
        lambda: len(os.listdir(tmp_path / "node" / "chan" / "source" / "2026-11-28T14")) == 3,
        timeout=STARTUP_TIMEOUT,
        what="the backfill",
    )
    check(backfiller, "backfiller")
    restreamer = scrape(restreamer_port, "http_request_latency_segment_count{")
    assert "http_request_latency_list_hour_names_count{" in restreamer
    check(restreamer, "restreamer")


def test_downloader_metrics_pass_promtool(tmp_path, start):
    dead_origin, metrics_port = free_ports(2)
    start(
        "downloader", "downloader", "--base-dir", str(tmp_path / "store"),
        "--metrics-port", str(metrics_port),
        f"chan=http://127.0.0.1:{dead_origin}/master.m3u8",
    )  # fmt: skip
    check(scrape(metrics_port, "downloader_errors_total{"), "downloader")
