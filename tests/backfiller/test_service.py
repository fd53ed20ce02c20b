"""The backfiller as a service: passes over time, backoff, --start and --recent-cutoff,
node-file reload, the command line, SIGTERM mid-pass."""

import datetime
import os
import signal
import subprocess
import sys

import gevent
import pytest

from backfiller import main
from backfiller.main import Manager, PeerWorker
from backfiller.plan import Peer, peer_from_url
from common.segments import UTC, atomic_write
from tests.backfiller.peers import FakePeer, put_segment, respond, store_files, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
S = datetime.timedelta(seconds=1)
H = datetime.timedelta(hours=1)
T0 = datetime.datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
# A fresh interpreter importing gevent on a loaded 2-core machine can take
# seconds; only a hang reaches this.
PROCESS_TIMEOUT = 60


def make_store(base, count, start=T0, channel="chan"):
    return [put_segment(base, channel, "source", start + 2 * i * S) for i in range(count)]


def test_second_pass_fetches_nothing(servers, tmp_path, metrics):
    make_store(tmp_path / "peer", 4)
    peer = FakePeer(tmp_path / "peer")
    url = servers.serve(peer)
    worker = PeerWorker(peer_from_url(url), str(tmp_path / "local"), ["chan"], ["source"],
                        metrics=metrics)  # fmt: skip
    worker.run(once=True)
    assert worker.fetched == 4
    peer.requests.clear()
    worker.run(once=True)
    assert worker.fetched == 0 and worker.errors == 0
    assert not [p for p in peer.requests if p.startswith("/segments/")]
    assert store_files(tmp_path / "local") == store_files(tmp_path / "peer")


def test_start_and_recent_cutoff(servers, tmp_path, metrics):
    now = datetime.datetime.now(UTC)
    peer_dir = tmp_path / "peer"
    too_old = put_segment(peer_dir, "chan", "source", now - 3 * H)
    old_enough = [
        put_segment(peer_dir, "chan", "source", now - 1 * H),
        put_segment(peer_dir, "chan", "source", now - 600 * S),
    ]
    too_recent = put_segment(peer_dir, "chan", "source", now - 30 * S)
    url = servers.serve(FakePeer(peer_dir))
    local = tmp_path / "local"
    worker = PeerWorker(
        peer_from_url(url), str(local), ["chan"], ["source"], metrics=metrics,
        start=2 * H, recent_cutoff=120 * S,
    )  # fmt: skip
    worker.run(once=True)
    fetched = set(store_files(local))
    assert fetched == {os.path.relpath(p, peer_dir) for p in old_enough}
    assert os.path.relpath(too_old, peer_dir) not in fetched
    assert os.path.relpath(too_recent, peer_dir) not in fetched
    # An absolute start works the same way; a cutoff of 0 takes everything since.
    worker.start, worker.recent_cutoff = now - 3 * H, 0 * S
    worker.run(once=True)
    assert store_files(local) == store_files(peer_dir)


def test_failing_peer_backs_off_exponentially_then_recovers(servers, tmp_path, metrics, registry):
    make_store(tmp_path / "peer", 2)
    peer = FakePeer(tmp_path / "peer")
    seen_backoff = []
    failures_left = [5]

    def flaky(environ, start_response):
        # The gauge holds the wait that preceded this request.
        labels = {"peer": peer_from_url(url).name}
        seen_backoff.append(registry.get_sample_value("backfiller_backoff_seconds", labels))
        if failures_left[0]:
            failures_left[0] -= 1
            return respond(503, b"busy")(environ, start_response)
        return peer.honest("/files/chan/source", start_response)

    peer.overrides["/files/chan/source"] = flaky
    url = servers.serve(peer)
    local = tmp_path / "local"
    worker = PeerWorker(peer_from_url(url), str(local), ["chan"], ["source"], metrics=metrics)
    greenlet = gevent.spawn(worker.run)
    try:
        wait_for(lambda: worker.passes >= 7)
    finally:
        worker.stop()
        greenlet.join(timeout=5)
    assert greenlet.dead and greenlet.exception is None
    # BACKOFF is (0.02, 0.1) in tests: doubling, capped, then back to 0 after a good pass.
    assert seen_backoff[:7] == [None, 0.02, 0.04, 0.08, 0.1, 0.1, 0]
    assert store_files(local) == store_files(tmp_path / "peer")
    labels = {"peer": peer_from_url(url).name, "kind": "http"}
    assert registry.get_sample_value("backfiller_errors_total", labels) == 5


def test_node_file_is_reread(servers, tmp_path, metrics, registry):
    stores = {name: tmp_path / name for name in ("a", "b", "me")}
    for i, store in enumerate(stores.values()):
        make_store(store, 2, start=T0 + i * H)
    urls = {name: servers.serve(FakePeer(store)) for name, store in stores.items()}
    local = tmp_path / "local"
    node_file = tmp_path / "nodes"

    def expected(*names):
        files = {}
        for name in names:
            files.update(store_files(stores[name]))
        return files

    atomic_write(str(node_file), f"# peers\na {urls['a']}\nme {urls['me']}\n".encode())
    manager = Manager(str(local), ["chan"], ["source"], node_file=str(node_file),
                      node_name="me", metrics=metrics)  # fmt: skip
    greenlet = gevent.spawn(manager.run)
    try:
        wait_for(lambda: store_files(local) == expected("a"))
        assert list(manager.workers) == [Peer("a", urls["a"])]
        # Replace a by b (given by URL only); this node's own URL is skipped too.
        manager.self_urls = {urls["me"]}
        atomic_write(str(node_file), f"{urls['b']}\n{urls['me']}\nnot a node line\n".encode())
        wait_for(lambda: store_files(local) == expected("a", "b"))
        assert list(manager.workers) == [peer_from_url(urls["b"])]
        assert registry.get_sample_value("backfiller_node_file_errors_total") >= 1
        assert registry.get_sample_value("backfiller_peers") == 1
        # a is no longer asked: new segments there stay there, while b's arrive.
        not_asked = os.path.relpath(put_segment(stores["a"], "chan", "source", T0 - H), stores["a"])
        put_segment(stores["b"], "chan", "source", T0 - H)
        wait_for(lambda: len(store_files(local)) == 5)
        b_worker = manager.workers[peer_from_url(urls["b"])][0]
        passes = b_worker.passes
        wait_for(lambda: b_worker.passes >= passes + 2)
        assert not_asked not in store_files(local)
        assert len(store_files(local)) == 5
        # A missing node file keeps the peers we have.
        os.remove(node_file)
        wait_for(lambda: b_worker.passes >= passes + 4)
        assert list(manager.workers) == [peer_from_url(urls["b"])]
    finally:
        manager.stop()
        greenlet.join(timeout=5)
    assert greenlet.dead and greenlet.exception is None
    assert all(worker_greenlet.dead for _, worker_greenlet in manager.workers.values())
    assert not (set(store_files(local)) & set(store_files(stores["me"])))


def run_backfiller(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "backfiller", "--metrics-port", "0", *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        env=dict(os.environ, STREAMVAULT_LOG_LEVEL="INFO"),
    )


@pytest.mark.slow
def test_command_line_run_once(servers, tmp_path):
    make_store(tmp_path / "peer", 3)
    make_store(tmp_path / "peer", 2, channel="other")
    url = servers.serve(FakePeer(tmp_path / "peer"))
    local = tmp_path / "local"
    proc = run_backfiller("--base-dir", str(local), "--channels", "chan,other", "--nodes", url,
                          "--run-once")  # fmt: skip
    _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 0, stderr.decode()
    assert store_files(local) == store_files(tmp_path / "peer")


@pytest.mark.slow
def test_bad_command_line_is_one_line(tmp_path):
    proc = run_backfiller("--channels", "../etc", "--nodes", "http://x")
    _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 2
    assert (
        stderr.decode().strip().splitlines()[-1].endswith("bad channel '../etc': starts with '.'")
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_mid_pass_stops_promptly_and_leaves_no_temp_files(servers, tmp_path):
    # Three segments that stall after their first bytes; three that do not.
    paths = make_store(tmp_path / "peer", 6)
    peer = FakePeer(tmp_path / "peer")
    for path in paths[:3]:
        with open(path, "rb") as f:
            trickle = peer.trickle(f.read(), first=10)
        peer.overrides["/segments/" + os.path.relpath(path, tmp_path / "peer")] = trickle
    url = servers.serve(peer)
    local = tmp_path / "local"
    proc = run_backfiller("--base-dir", str(local), "--channels", "chan", "--nodes", url,
                          "--concurrency", "3")  # fmt: skip
    try:
        # Mid-pass: three fetches hang part-way through their bodies (the other
        # three segments are queued behind them, or done).
        stalled = ["/segments/" + os.path.relpath(path, tmp_path / "peer") for path in paths[:3]]
        wait_for(lambda: all(p in peer.requests for p in stalled), timeout=PROCESS_TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert "got SIGTERM" in stderr.decode()
    assert not [p for p in store_files(local) if "-temp-" in p]
    for path in paths[:3]:
        assert os.path.relpath(path, tmp_path / "peer") not in store_files(local)


def test_hours_are_visited_newest_first_across_qualities(servers, tmp_path, metrics):
    peer_dir = tmp_path / "peer"
    for hours_later, quality in [(0, "source"), (2, "source"), (1, "480p"), (3, "480p")]:
        put_segment(peer_dir, "chan", quality, T0 + hours_later * H)
    peer = FakePeer(peer_dir)
    url = servers.serve(peer)
    worker = PeerWorker(peer_from_url(url), str(tmp_path / "local"), ["chan"],
                        ["source", "480p"], metrics=metrics)  # fmt: skip
    worker.run(once=True)
    hour_listings = [p for p in peer.requests if p.count("/") == 4 and p.startswith("/files/")]
    hours = ["2026-01-10T13", "2026-01-10T12", "2026-01-10T11", "2026-01-10T10"]
    # Every hour of either quality, for both qualities, newest first.
    assert hour_listings == [f"/files/chan/{q}/{h}" for h in hours for q in ("source", "480p")]
    assert store_files(tmp_path / "local") == store_files(peer_dir)


def test_no_peers_yet_waits_for_the_node_file(servers, tmp_path, metrics, monkeypatch, caplog):
    # Re-read because it changed, not because an interval passed.
    monkeypatch.setattr(main, "NODE_FILE_INTERVAL", 3600)
    caplog.set_level("INFO", logger="backfiller")
    make_store(tmp_path / "peer", 2)
    url = servers.serve(FakePeer(tmp_path / "peer"))
    local, node_dir = tmp_path / "local", tmp_path / "etc"
    node_file = node_dir / "nodes"
    manager = Manager(str(local), ["chan"], ["source"], node_file=str(node_file),
                      metrics=metrics)  # fmt: skip
    greenlet = gevent.spawn(manager.run)

    def lines(level):
        return [r.getMessage() for r in caplog.records if r.levelname == level]

    try:
        # Missing: one clear line however often it is looked at, and idle.
        wait_for(lambda: len(lines("INFO")) and len(lines("WARNING")))
        gevent.sleep(0.2)
        assert len(lines("WARNING")) == 1 and "No such file" in lines("WARNING")[0]
        assert any("waiting for peers" in line for line in lines("INFO"))
        # A directory at its path (a Docker bind mount of a missing file): one line.
        node_file.mkdir(parents=True)
        wait_for(lambda: len(lines("WARNING")) == 2)
        assert "is a directory" in lines("WARNING")[1]
        node_file.rmdir()
        # An empty file: still idle.
        node_file.write_text("# no peers yet\n")
        wait_for(lambda: manager._file_state == manager.node_file_state())
        assert manager.workers == {} and not greenlet.dead
        # Saved by rename, as editors do: picked up.
        atomic_write(str(node_file), f"peer {url}\n".encode())
        wait_for(lambda: store_files(local) == store_files(tmp_path / "peer"))
        # Edited in place (same inode, new size): picked up too.
        with open(node_file, "w") as f:
            f.write("# none\n")
        wait_for(lambda: manager.workers == {})
    finally:
        manager.stop()
        greenlet.join(timeout=5)
    assert greenlet.dead and greenlet.exception is None
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.slow
def test_command_line_without_peers_idles_until_stopped(tmp_path):
    proc = run_backfiller("--base-dir", str(tmp_path), "--channels", "chan",
                          "--node-file", str(tmp_path / "missing"))  # fmt: skip
    try:
        lines = []

        def waiting():
            lines.append(proc.stderr.readline().decode())
            return "waiting for peers" in lines[-1] or proc.poll() is not None

        wait_for(waiting, timeout=PROCESS_TIMEOUT)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=PROCESS_TIMEOUT)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in "".join(lines) + rest
