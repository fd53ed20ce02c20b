"""Replication between real restreamers: every store ends up with the union.

Three nodes, each a real restreamer (`restreamer.app.create_app`) over its own
store on gevent's WSGI server, and a backfiller per node that is given all
three URLs (its own is skipped). The stores overlap, each with holes the others
fill, across two hours and two qualities, with broken (`partial`/`suspect`)
copies and a `temp` file in the mix.
"""

import datetime
import os

import gevent
import prometheus_client

from backfiller.main import Manager, Metrics
from common.segments import UTC, segment_name
from restreamer.app import create_app
from tests.backfiller.peers import media, put_segment, store_files

S = datetime.timedelta(seconds=1)
# Slots straddle an hour boundary, so hour listings and ordering matter.
T0 = datetime.datetime(2026, 1, 10, 10, 59, 40, tzinfo=UTC)
SLOTS = 24  # two-second segments: 40 s before the hour, 8 s after
NODES = ("a", "b", "c")


def slot_start(i):
    return T0 + 2 * i * S


def build_stores(tmp_path):
    """Three overlapping stores.

    Returns `(dirs, shared, broken)`: every node should end with `shared`
    (relpath: bytes) besides its own files, and may also pick up copies from
    `broken` (relpath: the nodes that must never take it, holding better).
    """
    dirs = {node: tmp_path / node for node in NODES}
    for d in dirs.values():
        d.mkdir()
    shared = {}

    def put(node, start, data, quality="source", type="full"):
        path = put_segment(dirs[node], "chan", quality, start, data, type=type)
        return os.path.relpath(path, dirs[node])

    for quality in ("source", "480p"):
        for i in range(SLOTS):
            data = media(f"{quality} slot {i}".encode())
            # Slot i is on every node but node i % 3 (a hole each fills from
            # the others), and slots 0-2 only on one node each.
            holders = [n for k, n in enumerate(NODES) if k != i % 3]
            if i < 3:
                holders = [NODES[i]]
            for node in holders:
                shared[put(node, slot_start(i), data, quality)] = data
    # Only c has this later 480p hour: the hours are the union over qualities.
    shared[put("c", T0 + 2 * 3600 * S, media(b"late"), "480p")] = media(b"late")
    # Broken copies. Slot 30: a has a full copy, b a partial one.
    shared[put("a", slot_start(30), media(b"whole"))] = media(b"whole")
    broken = {put("b", slot_start(30), media(b"wh"), type="partial"): {"a"}}
    # Slot 31: no full copy anywhere; b's suspect beats a's and c's partials, so
    # every node takes it. Whether a partial reaches a node before the suspect
    # does depends on which peer's worker gets there first: allowed, harmless.
    shared[put("b", slot_start(31), media(b"sus"), type="suspect")] = media(b"sus")
    broken[put("a", slot_start(31), media(b"p1"), type="partial")] = {"b"}
    broken[put("c", slot_start(31), media(b"p2"), type="partial")] = {"b"}
    # A download in progress on a: never listed, never copied.
    temp = dirs["a"] / "chan" / "source" / "2026-01-10T10"
    (temp / segment_name(slot_start(40), 2 * S, "temp", "inprogress")).write_bytes(b"half")
    return dirs, shared, broken


def serve_restreamers(servers, dirs):
    return {node: servers.serve(create_app(str(d))) for node, d in dirs.items()}


def backfill_all(dirs, urls, metrics):
    """One pass of a backfiller per node, all at once; returns the segments fetched per node."""
    managers = {
        node: Manager(
            str(dirs[node]),
            ["chan"],
            ["source", "480p"],
            nodes=list(urls.values()),
            self_urls=[urls[node]],
            metrics=metrics[node],
            once=True,
        )  # fmt: skip
        for node in NODES
    }
    greenlets = [gevent.spawn(m.run) for m in managers.values()]
    gevent.joinall(greenlets, timeout=30, raise_error=True)
    assert all(g.dead for g in greenlets)
    fetched = {}
    for node, manager in managers.items():
        assert len(manager.workers) == 2  # itself skipped
        assert all(w.errors == 0 for w, _ in manager.workers.values())
        fetched[node] = sum(w.fetched for w, _ in manager.workers.values())
    return fetched


def test_three_restreamers_converge_on_the_union(servers, tmp_path):
    dirs, shared, broken = build_stores(tmp_path)
    everything = {}
    for d in dirs.values():
        everything.update(store_files(d))
    before = {node: store_files(d) for node, d in dirs.items()}
    urls = serve_restreamers(servers, dirs)
    registries = {node: prometheus_client.CollectorRegistry() for node in NODES}
    metrics = {node: Metrics(registries[node]) for node in NODES}

    fetched = backfill_all(dirs, urls, metrics)

    after = {node: store_files(d) for node, d in dirs.items()}
    for node in NODES:
        # The union, byte for byte, besides everything it had...
        assert after[node].items() >= {**before[node], **shared}.items(), node
        # ...and nothing else but broken copies it had nothing better than.
        extra = set(after[node]) - set(before[node]) - set(shared)
        assert extra <= {p for p, refused_by in broken.items() if node not in refused_by}, node
        assert all(after[node][p] == everything[p] for p in extra)
        assert fetched[node] == len(set(after[node]) - set(before[node])), node
        assert not [p for p in set(after[node]) - set(before[node]) if "-temp-" in p]
    # The metrics agree, and never carry an hour.
    total = sum(
        registries["a"].get_sample_value(
            "backfiller_segments_total", {"peer": peer, "channel": "chan", "quality": q}
        ) or 0
        for peer in (urls["b"][7:], urls["c"][7:])
        for q in ("source", "480p")
    )  # fmt: skip
    assert total == fetched["a"]
    for metric in registries["a"].collect():
        for sample in metric.samples:
            assert "hour" not in sample.labels

    # A second pass finds nothing to do.
    assert backfill_all(dirs, urls, metrics) == {"a": 0, "b": 0, "c": 0}
    assert {node: store_files(d) for node, d in dirs.items()} == after
