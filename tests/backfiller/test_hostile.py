"""Peers that fail or lie: nothing bad is written, every error is counted, good peers still used.

The peers here are `FakePeer`s: honest from a store unless a path is given a
hostile handler. Timeouts are shortened by the `fast` fixture.
"""

import datetime
import gzip
import os
import shutil

import gevent
import gevent.event
import gevent.pywsgi
import gevent.server
import pytest

import common.backoff
from backfiller import client, main
from backfiller.main import Manager, PeerWorker
from backfiller.plan import peer_from_url
from common.segments import UTC, segment_name
from tests import util
from tests.backfiller.peers import (
    FakePeer,
    fake_name,
    media,
    put_segment,
    respond,
    respond_json,
    store_files,
    wait_for,
)

S = datetime.timedelta(seconds=1)
T0 = datetime.datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
HOUR = "2026-01-10T10"
GOOD_HASH_NAME = segment_name(T0, 2 * S, "full", "A" * 43)


def make_store(base, count=4, channel="chan", quality="source", start=T0):
    """`count` two-second segments from `start`; returns their paths."""
    return [put_segment(base, channel, quality, start + 2 * i * S) for i in range(count)]


def run_once(url, base, metrics, channels=("chan",), qualities=("source",), **kwargs):
    worker = PeerWorker(
        peer_from_url(url), str(base), channels, qualities, metrics=metrics, **kwargs
    )
    worker.run(once=True)
    return worker


def errors(registry, url, kind):
    peer = peer_from_url(url).name
    return registry.get_sample_value("backfiller_errors_total", {"peer": peer, "kind": kind})


def no_temp_files(base):
    return [p for p in store_files(base) if "-temp-" in p or os.path.basename(p).startswith(".")]


@pytest.fixture
def dirs(tmp_path):
    peer, local = tmp_path / "peer", tmp_path / "local"
    peer.mkdir()
    local.mkdir()
    return peer, local


def test_honest_peer_is_copied_exactly(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    make_store(peer_dir, 3)
    make_store(peer_dir, 2, quality="480p", start=T0 + datetime.timedelta(hours=1))
    url = servers.serve(FakePeer(peer_dir))
    worker = run_once(url, local, metrics, qualities=("source", "480p"))
    assert store_files(local) == store_files(peer_dir)
    assert worker.fetched == 5 and worker.errors == 0
    peer = peer_from_url(url).name
    labels = {"peer": peer, "channel": "chan", "quality": "source"}
    assert registry.get_sample_value("backfiller_segments_total", labels) == 3
    sizes = sum(len(v) for k, v in store_files(peer_dir).items() if "/source/" in k)
    assert registry.get_sample_value("backfiller_bytes_total", labels) == sizes
    assert (
        registry.get_sample_value("backfiller_pass_latency_count", {"peer": peer, "error": ""}) == 1
    )


def test_wrong_bytes_are_deleted_and_counted(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    paths = make_store(peer_dir, 3)
    liar = FakePeer(peer_dir)
    lie = os.path.relpath(paths[1], peer_dir)
    liar.overrides["/segments/" + lie] = respond(200, b"not the bytes you hashed")
    url = servers.serve(liar)
    worker = run_once(url, local, metrics)
    expected = store_files(peer_dir)
    del expected[lie]
    assert store_files(local) == expected
    assert worker.errors == 1
    assert errors(registry, url, "hash_mismatch") == 1
    labels = {"peer": peer_from_url(url).name, "channel": "chan", "quality": "source"}
    assert registry.get_sample_value("backfiller_hash_mismatches_total", labels) == 1


def test_bad_names_in_listings_are_skipped_and_counted(servers, dirs, metrics, registry, tmp_path):
    peer_dir, local = dirs
    paths = make_store(peer_dir, 2)
    good = [os.path.basename(p) for p in paths]
    name = fake_name(T0 + 10 * S, b"x")
    hostile = [
        f"../../../{name}",  # walks out
        f"/tmp/{name}",  # absolute
        f"other/source/{HOUR}/{name}",  # another channel's listing
        f"{HOUR}/{name}",  # a path, even to the right hour
        "." + name,  # hidden
        "garbage.ts",
        name.replace(".ts", ".mkv"),  # not a container the store holds
        name[:-10] + "!!!!!!.ts",  # bad hash
        "61:00.000000-2.000-full-" + "A" * 43 + ".ts",  # minute 61
        17,
        None,
        ["x"],
        {"name": name},
        "",
    ]
    temp = segment_name(T0 + 20 * S, 2 * S, "temp", "sometempid")  # silently ignored
    peer = FakePeer(peer_dir)
    peer.overrides[f"/files/chan/source/{HOUR}"] = respond_json([*good, *hostile, temp])
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    assert store_files(local) == store_files(peer_dir)
    assert errors(registry, url, "bad_listing") == len(hostile)
    assert worker.errors == len(hostile)
    fetched = [p for p in peer.requests if p.startswith("/segments/")]
    assert sorted(fetched) == sorted(f"/segments/chan/source/{HOUR}/{n}" for n in good)
    # nothing anywhere but the two stores
    assert sorted(os.listdir(tmp_path)) == ["local", "peer"]


def test_bad_hours_are_skipped_and_counted(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    make_store(peer_dir, 2)
    hostile = ["../../etc", "2026-13-01T00", "2026-01-10T10/..", "2026-01-10", 2026, None, ""]
    peer = FakePeer(peer_dir)
    peer.overrides["/files/chan/source"] = respond_json([HOUR, *hostile])
    url = servers.serve(peer)
    run_once(url, local, metrics)
    assert store_files(local) == store_files(peer_dir)
    assert errors(registry, url, "bad_listing") == len(hostile)
    assert all(p.startswith(("/files/chan/source", "/segments/chan/source/" + HOUR))
               for p in peer.requests)  # fmt: skip


@pytest.mark.parametrize(
    "handler, kind",
    [
        (respond(200, b"<html>surprise</html>"), "bad_json"),
        (respond(200, b'{"hours": []}'), "bad_json"),
        (respond(500, b"oops"), "http"),
        (respond(403, b"no"), "http"),
        ("hang", "timeout"),
    ],
)
@pytest.mark.parametrize("level", ["hours", "hour"])
def test_unreadable_listings_abandon_the_pass(
    servers, dirs, metrics, registry, handler, kind, level, short_timeouts
):
    peer_dir, local = dirs
    make_store(peer_dir, 2)
    peer = FakePeer(peer_dir)
    path = "/files/chan/source" + (f"/{HOUR}" if level == "hour" else "")
    peer.overrides[path] = peer.hang if handler == "hang" else handler
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    assert store_files(local) == {}
    assert worker.errors == 1
    assert errors(registry, url, kind) == 1


def test_oversized_listing_is_refused(servers, dirs, metrics, registry, monkeypatch):
    peer_dir, local = dirs
    monkeypatch.setattr(client, "MAX_LISTING_BYTES", 1000)
    peer = FakePeer(peer_dir)
    peer.overrides["/files/chan/source"] = respond_json([HOUR] * 1000)
    url = servers.serve(peer)
    run_once(url, local, metrics)
    assert errors(registry, url, "too_large") == 1


@pytest.mark.parametrize("behaviour", ["truncated", "trickle", "500", "404", "too_large"])
def test_broken_segment_bodies_leave_nothing(
    servers, dirs, metrics, registry, monkeypatch, behaviour, short_timeouts
):
    peer_dir, local = dirs
    paths = make_store(peer_dir, 3)
    peer = FakePeer(peer_dir)
    broken = os.path.relpath(paths[0], peer_dir)
    with open(paths[0], "rb") as f:
        data = f.read()
    if behaviour == "too_large":
        monkeypatch.setattr(client, "MAX_SEGMENT_BYTES", len(data) - 1)
    # Only the broken one may be over the limit: make the others smaller.
    for path in paths[1:]:
        os.remove(path)
    for i in (1, 2):
        put_segment(peer_dir, "chan", "source", T0 + 2 * i * S, media(b"small", S), S)
    handlers = {
        "truncated": peer.truncated(data),
        "trickle": peer.trickle(data),
        "500": respond(500),
        "404": respond(404),
        "too_large": None,
    }
    if handlers[behaviour]:
        peer.overrides["/segments/" + broken] = handlers[behaviour]
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    expected = store_files(peer_dir)
    del expected[broken]
    assert store_files(local) == expected
    assert no_temp_files(local) == []
    if behaviour == "404":
        # Gone since it was listed (the peer's retention): not an error.
        assert worker.errors == 0
        return
    assert worker.errors == 1
    kind = {"trickle": "timeout", "500": "http", "too_large": "too_large"}
    assert errors(registry, url, kind.get(behaviour, "connection")) == 1


def test_connection_reset_and_refused(servers, dirs, metrics, registry):
    _, local = dirs
    resetter = gevent.server.StreamServer(("127.0.0.1", 0), lambda sock, addr: sock.close())
    resetter.start()
    try:
        url = f"http://127.0.0.1:{resetter.server_port}"
        run_once(url, local, metrics)
        assert errors(registry, url, "connection") == 1
    finally:
        resetter.stop()
    # the port is closed now: connection refused
    run_once(url, local, metrics)
    assert errors(registry, url, "connection") == 2


def test_good_peers_fully_used_beside_hostile_ones(
    servers, tmp_path, metrics, registry, short_timeouts
):
    good_dir, local = tmp_path / "good", tmp_path / "local"
    paths = make_store(good_dir, 6)
    # The liar claims every good name, serves wrong bytes for each, and adds junk.
    liar = FakePeer()
    names = [os.path.basename(p) for p in paths]
    liar.overrides["/files/chan/source"] = respond_json([HOUR, "../x"])
    liar.overrides[f"/files/chan/source/{HOUR}"] = respond_json([*names, "../../evil.ts"])
    for name in names:
        liar.overrides[f"/segments/chan/source/{HOUR}/{name}"] = respond(200, b"lies")
    broken = FakePeer()
    broken.overrides["/files/chan/source"] = respond(502, b"bad gateway")
    hanging = FakePeer()
    hanging.overrides["/files/chan/source"] = hanging.hang
    good_url = servers.serve(FakePeer(good_dir))
    urls = [servers.serve(liar), servers.serve(broken), servers.serve(hanging), good_url]
    Manager(str(local), ["chan"], ["source"], nodes=urls, metrics=metrics, once=True).run()
    assert store_files(local) == store_files(good_dir)
    assert no_temp_files(local) == []
    assert errors(registry, urls[0], "bad_listing") == 2
    assert errors(registry, urls[1], "http") == 1
    assert errors(registry, urls[2], "timeout") == 1
    assert errors(registry, good_url, "http") is None


def test_lying_peer_alone_writes_nothing(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    names = [os.path.basename(p) for p in make_store(peer_dir, 5)]
    liar = FakePeer()
    liar.overrides["/files/chan/source"] = respond_json([HOUR])
    liar.overrides[f"/files/chan/source/{HOUR}"] = respond_json(names)
    for name in names:
        liar.overrides[f"/segments/chan/source/{HOUR}/{name}"] = respond(
            200, b"lies " + name.encode()
        )
    url = servers.serve(liar)
    worker = run_once(url, local, metrics, concurrency=2)
    assert store_files(local) == {}
    assert errors(registry, url, "hash_mismatch") == 5
    assert worker.fetched == 0


def test_fetches_in_random_order_at_most_concurrency_at_once(servers, dirs, metrics):
    peer_dir, local = dirs
    paths = make_store(peer_dir, 40)
    peer = FakePeer(peer_dir)
    in_flight, most = [0], [0]
    full = gevent.event.Event()

    def slow(environ, start_response):
        # Hold each request until three are in flight at once (bounded, in
        # case the pool never allows that), so the most is reached for sure.
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        if in_flight[0] == 3:
            full.set()
        full.wait(5)
        in_flight[0] -= 1
        return peer.honest(environ["PATH_INFO"], start_response)

    for path in paths:
        peer.overrides["/segments/" + os.path.relpath(path, peer_dir)] = slow
    url = servers.serve(peer)
    run_once(url, local, metrics, concurrency=3)
    assert store_files(local) == store_files(peer_dir)
    assert most[0] == 3
    asked = [p for p in peer.requests if p.startswith("/segments/")]
    # 40 names in time order by chance: 1 in 40!
    assert asked != sorted(asked)
    assert sorted(asked) == sorted("/segments/" + os.path.relpath(p, peer_dir) for p in paths)


def test_fetches_started_before_a_listing_fails_are_finished(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    later = make_store(peer_dir, 3, start=T0 + datetime.timedelta(hours=1))
    make_store(peer_dir, 3)
    peer = FakePeer(peer_dir)
    # Newest hour first: its segments are being fetched when the older hour's
    # listing fails.
    peer.overrides[f"/files/chan/source/{HOUR}"] = respond(500)
    for path in later:
        data = open(path, "rb").read()

        def slow(environ, start_response, data=data):
            gevent.sleep(0.05)
            return respond(200, data)(environ, start_response)

        peer.overrides["/segments/" + os.path.relpath(path, peer_dir)] = slow
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    assert set(store_files(local)) == {os.path.relpath(p, peer_dir) for p in later}
    assert worker.fetched == 3
    assert errors(registry, url, "http") == 1


def test_our_own_disk_failing_is_counted_as_local(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    make_store(peer_dir, 2)
    (local / "chan").write_bytes(b"a file where the channel directory should be")
    url = servers.serve(FakePeer(peer_dir))
    worker = run_once(url, local, metrics)
    assert worker.fetched == 0 and worker.errors == 2
    assert errors(registry, url, "local") == 2
    assert sorted(os.listdir(local)) == ["chan"]


def test_compressed_bodies_are_never_expanded(servers, dirs, metrics, registry):
    # A gzip bomb would expand a small body a thousandfold in memory: bodies
    # are taken exactly as sent, so a compressed one fails its hash or JSON.
    peer_dir, local = dirs
    paths = make_store(peer_dir, 2)
    peer = FakePeer(peer_dir)
    gzip_header = [("Content-Encoding", "gzip")]
    with open(paths[0], "rb") as f:
        packed = gzip.compress(f.read())
    peer.overrides["/segments/" + os.path.relpath(paths[0], peer_dir)] = respond(
        200, packed, gzip_header
    )
    url = servers.serve(peer)
    run_once(url, local, metrics)
    assert set(store_files(local)) == {os.path.relpath(paths[1], peer_dir)}
    assert errors(registry, url, "hash_mismatch") == 1

    bomb = FakePeer(peer_dir)
    bomb.overrides["/files/chan/source"] = respond(
        200, gzip.compress(b"[" + b" " * 50_000_000 + b"]"), gzip_header
    )
    url = servers.serve(bomb)
    run_once(url, local, metrics)
    assert errors(registry, url, "bad_json") == 1


def test_bodies_that_are_not_their_segment_are_refused_and_counted(
    servers, dirs, metrics, registry
):
    # Each hashes to its name, so only the body check can tell.
    peer_dir, local = dirs
    good = make_store(peer_dir, 1)
    lies = {
        "ten bytes": (b"0123456789", 2 * S),
        "six seconds named two": (media(b"long", 6 * S), 2 * S),
        "two seconds named six": (media(b"short"), 6 * S),
        "html": (b"<html>" + b" " * 400 + b"</html>", 2 * S),
    }
    for i, (data, duration) in enumerate(lies.values()):
        put_segment(peer_dir, "chan", "source", T0 + (10 + 10 * i) * S, data, duration)
    url = servers.serve(FakePeer(peer_dir))
    worker = run_once(url, local, metrics)
    assert set(store_files(local)) == {os.path.relpath(good[0], peer_dir)}
    assert worker.errors == len(lies)
    assert errors(registry, url, "bad_media") == len(lies)
    assert no_temp_files(local) == []


def test_a_peer_never_replaces_a_start_this_node_holds_whole(servers, dirs, metrics):
    # The attack: a real segment padded with null packets (so it hashes to a
    # new name and wins the store's "largest" tie-break), or other video, for
    # a start this node recorded itself.
    peer_dir, local = dirs
    own = make_store(local, 2)
    with open(own[0], "rb") as f:
        padded = f.read() + (b"\x47\x1f\xff\x10" + b"\xff" * 184) * 50
    put_segment(peer_dir, "chan", "source", T0, padded)
    put_segment(peer_dir, "chan", "source", T0 + 2 * S, media(b"other video"))
    newer = put_segment(peer_dir, "chan", "source", T0 + 4 * S)  # a hole here: taken
    peer = FakePeer(peer_dir)
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    fetched = [p for p in peer.requests if p.startswith("/segments/")]
    assert fetched == ["/segments/" + os.path.relpath(newer, peer_dir)]
    assert worker.fetched == 1 and worker.errors == 0
    assert len(store_files(local)) == 3


@pytest.mark.parametrize("what", ["hours", "hour", "segment"])
def test_redirects_are_never_followed(servers, dirs, metrics, registry, what):
    # A peer's 302 to an address only it can reach (here: an honest server
    # holding what we lack) must not be fetched, nor its answer used.
    peer_dir, local = dirs
    paths = make_store(peer_dir, 2)
    internal = FakePeer(peer_dir)
    internal_url = servers.serve(internal)
    peer = FakePeer(peer_dir)
    path = {
        "hours": "/files/chan/source",
        "hour": f"/files/chan/source/{HOUR}",
        "segment": "/segments/" + os.path.relpath(paths[0], peer_dir),
    }[what]
    peer.overrides[path] = respond(302, b"", [("Location", internal_url + path)])
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    assert internal.requests == []
    assert errors(registry, url, "http") == 1 and worker.errors == 1
    if what == "segment":
        assert set(store_files(local)) == {os.path.relpath(paths[1], peer_dir)}
    else:
        assert store_files(local) == {}


def test_refused_segments_are_one_warning_per_kind_and_pass(
    servers, dirs, metrics, registry, caplog
):
    peer_dir, local = dirs
    names = [os.path.basename(p) for p in make_store(peer_dir, 30)]
    liar = FakePeer(peer_dir)
    for name in names[:20]:
        liar.overrides[f"/segments/chan/source/{HOUR}/{name}"] = respond(200, b"lies")
    for name in names[20:25]:
        liar.overrides[f"/segments/chan/source/{HOUR}/{name}"] = respond(500)
    url = servers.serve(liar)
    caplog.set_level("DEBUG", logger="backfiller")
    for _ in range(2):
        caplog.clear()
        shutil.rmtree(local)
        worker = run_once(url, local, metrics)
        assert worker.fetched == 5 and worker.errors == 25
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 2, warnings
        assert warnings[0].startswith("20 segments refused this pass (hash_mismatch), e.g. ")
        assert warnings[1].startswith("5 segments refused this pass (http), e.g. ")
        debug = [r for r in caplog.records if r.levelname == "DEBUG" and "Could not" in r.msg]
        assert len(debug) == 25
    assert errors(registry, url, "hash_mismatch") == 40


def test_a_segment_over_the_size_limit_is_refused(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    small = put_segment(peer_dir, "chan", "source", T0, media(b"small", S), S)
    big = put_segment(peer_dir, "chan", "source", T0 + 2 * S, media(b"big", 6 * S), 6 * S)
    limit = (os.path.getsize(small) + os.path.getsize(big)) // 2
    url = servers.serve(FakePeer(peer_dir))
    worker = run_once(url, local, metrics, max_segment_bytes=limit)
    assert set(store_files(local)) == {os.path.relpath(small, peer_dir)}
    assert errors(registry, url, "too_large") == 1 and worker.errors == 1
    assert no_temp_files(local) == []


def test_nothing_is_fetched_while_the_disk_is_low(servers, dirs, metrics, registry):
    peer_dir, local = dirs
    make_store(peer_dir, 3)
    peer = FakePeer(peer_dir)
    url = servers.serve(peer)
    free = shutil.disk_usage(local).free
    worker = run_once(url, local, metrics, min_free_bytes=free + 2**40)
    assert store_files(local) == {}
    assert not [p for p in peer.requests if p.startswith("/segments/")]
    assert errors(registry, url, "low_disk") == 1 and worker.errors == 1
    # With the space there, the same peer is copied.
    run_once(url, local, metrics, min_free_bytes=1)
    assert store_files(local) == store_files(peer_dir)


def test_a_slow_peer_does_not_hold_back_a_good_one(servers, tmp_path, metrics, monkeypatch):
    # Both peers hold the same segments; the slow one sends a byte of each,
    # then nothing. What the slow peer's worker took first is fetched again
    # from the good one after HEDGE_AFTER, long before the slow fetches end.
    monkeypatch.setattr(main, "HEDGE_AFTER", 0.2)
    monkeypatch.setattr(client, "FETCH_TIMEOUTS", (60, 60))
    store, local = tmp_path / "peers", tmp_path / "local"
    paths = make_store(store, 20)
    slow = FakePeer(store)
    for path in paths:
        with open(path, "rb") as f:
            slow.overrides["/segments/" + os.path.relpath(path, store)] = slow.trickle(f.read())
    good = FakePeer(store)
    urls = [servers.serve(slow), servers.serve(good)]
    manager = Manager(str(local), ["chan"], ["source"], nodes=urls, metrics=metrics, once=True)
    greenlet = gevent.spawn(manager.run)
    try:
        wait_for(lambda: len(manager.workers) == 2)
        slow_worker = manager.workers[peer_from_url(urls[0])][0]
        # the slow peer's worker has fetches hanging...
        wait_for(lambda: slow.requests.count("/files/chan/source") and len(slow_worker.pool))

        # ...and the store fills from the good peer all the same
        def complete():
            files = store_files(local)
            return {k: v for k, v in files.items() if "-temp-" not in k} == store_files(store)

        wait_for(complete, timeout=30)
        assert len(slow_worker.pool) and slow_worker.fetched == 0
        assert not slow.release.is_set()
    finally:
        manager.stop()
        greenlet.join(timeout=10)
    assert no_temp_files(local) == []


def test_empty_hours_are_paced(servers, dirs, metrics, monkeypatch):
    # A peer listing hour after hour that then lists nothing (404) is asked
    # ever more slowly, until an hour has something again.
    waits = []

    def sleep(stopping, seconds):
        waits.append(seconds)
        return False

    monkeypatch.setattr(common.backoff, "sleep", sleep)
    monkeypatch.setattr(main, "EMPTY_BACKOFF", (0.01, 0.08))
    peer_dir, local = dirs
    hours = [(T0 - i * datetime.timedelta(hours=1)) for i in range(12)]
    names = [h.strftime("%Y-%m-%dT%H") for h in hours]
    put_segment(peer_dir, "chan", "source", hours[6])  # the 7th hour, newest first
    peer = FakePeer(peer_dir)
    peer.overrides["/files/chan/source"] = respond_json(names)
    url = servers.serve(peer)
    worker = run_once(url, local, metrics)
    assert worker.fetched == 1 and worker.errors == 0
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.01, 0.02, 0.04, 0.08, 0.08]


def test_a_peer_not_up_yet_is_an_expected_first_failure(servers, dirs, metrics, registry, caplog):
    # Nodes start together: a peer refusing connections before it ever
    # answered is INFO (still counted); once it has answered, a WARNING.
    peer_dir, local = dirs
    make_store(peer_dir, 1)
    port = util.free_port()
    url = f"http://127.0.0.1:{port}"
    worker = PeerWorker(peer_from_url(url), str(local), ["chan"], ["source"], metrics=metrics)
    caplog.set_level("INFO", logger="backfiller")
    worker.run(once=True)
    worker.run(once=True)
    assert [r.levelname for r in caplog.records if "not up yet" in r.getMessage()] == ["INFO"] * 2
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert errors(registry, url, "connection") == 2
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", port), FakePeer(peer_dir), log=None)
    server.start()
    try:
        worker.run(once=True)
        assert worker.fetched == 1
    finally:
        server.stop(timeout=1)
    caplog.clear()
    worker.run(once=True)
    assert [r.levelname for r in caplog.records if "Pass abandoned" in r.getMessage()] == [
        "WARNING"
    ]
