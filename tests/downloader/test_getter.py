"""Segment getters against a fault-injecting origin: what ends up in the store."""

import pytest

from common.segments import hash_bytes
from downloader import getter
from downloader.main import QualityWorker
from downloader.playlist import Timeline
from tests.downloader.conftest import attempts, errors, make_manager, sample, segments_in, stored
from tests.util import wait_for


@pytest.fixture
def rig(origin, metrics, tmp_path, fast):
    """A channel `ch` with one quality and three published segments, and a worker on it."""
    stream = origin.add_channel("ch")["source"]
    stream.publish(3)
    manager = make_manager(origin, metrics, tmp_path)
    worker = QualityWorker(manager, "source", origin.media_url("ch", "source"), Timeline())
    return stream, manager, worker


def poll_once(manager, worker):
    """One worker step: fetch the playlist, start getters, wait for them all."""
    worker.handle(worker.fetch())
    manager.getters.join(timeout=10)
    assert not manager.getters
    assert stored(manager.base_dir, include_temp=True) == stored(manager.base_dir)


def files(tmp_path):
    return segments_in(tmp_path)


def test_segments_are_stored_whole_hashed_and_timed(rig, tmp_path, metrics):
    stream, manager, worker = rig
    poll_once(manager, worker)
    segments = files(tmp_path)
    assert [s.type for s in segments] == ["full"] * 3
    for segment, entry in zip(segments, stream.entries, strict=True):
        with open(segment.path, "rb") as f:
            data = f.read()
        assert data == entry.data
        assert segment.hash == hash_bytes(data)
        assert segment.start == entry.pdt
        assert segment.channel == "ch" and segment.quality == "source"
    assert (
        sample(metrics, "downloader_segments_total", channel="ch", quality="source", type="full")
        == 3
    )
    assert (
        metrics.registry.get_sample_value(
            "downloader_latest_segment_end_timestamp_seconds",
            {"channel": "ch", "quality": "source"},
        )
        == segments[-1].end.timestamp()
    )
    assert stored(tmp_path, include_temp=True) == stored(tmp_path)
    # Each call timed where it is made, labelled by its caller and its result.
    fetched = dict(channel="ch", quality="source", type="full", error="")
    assert sample(metrics, "downloader_segment_fetch_latency_count", **fetched) == 3
    assert sample(metrics, "downloader_segment_fetch_latency_normalized_count", **fetched) == 3
    assert (
        sample(
            metrics,
            "downloader_playlist_fetch_latency_count",
            channel="ch",
            quality="source",
            error="",
        )
        == 1
    )


def test_errors_and_resets_are_retried_until_a_full_copy(rig, tmp_path, metrics):
    stream, manager, worker = rig
    stream.fail(0, ("status", 500), ("status", 503))
    stream.fail(1, ("reset", 5000))
    stream.fail(2, ("truncate", 188 * 10))
    poll_once(manager, worker)
    assert [s.type for s in files(tmp_path)] == ["full"] * 3  # no partial once a full arrived
    assert origin_statuses(stream, 0) == [500, 503, 200]
    assert errors(metrics, "segment_http") == 2
    assert errors(metrics, "partial") == 2
    assert attempts(metrics, "retry") == 4


def origin_statuses(stream, sequence):
    return stream.origin.requests_for(f"/{stream.channel}/{stream.quality}/{sequence}.ts")


def test_a_body_that_always_breaks_is_kept_as_partial(rig, tmp_path, give_up_soon):
    stream, manager, worker = rig
    stream.publish(1)  # the fourth segment: it always breaks, at a different point
    stream.fail(3, *[("reset", 188 * n) for n in (50, 20, 30, 10, 40, 5, 25, 15) * 1000])
    poll_once(manager, worker)
    segments = files(tmp_path)
    assert [s.type for s in segments] == ["full", "full", "full", "partial"]
    partial = segments[-1]
    with open(partial.path, "rb") as f:
        data = f.read()
    assert data == stream.entries[3].data[: 188 * 50]  # the most that arrived
    assert partial.hash == hash_bytes(data)
    assert partial.duration == segments[0].duration  # filed under the segment's own length


def test_stalled_then_truncated_body_is_suspect(rig, tmp_path, give_up_soon):
    stream, manager, worker = rig
    # No Content-Length, a stall, then a clean close: looks complete, is not.
    stream.fail(0, *[("stall_close", 188 * 100, 0.1)] * 1000)
    # Empty bodies.
    stream.fail(1, *[("body", b"")] * 1000)
    poll_once(manager, worker)
    assert [s.type for s in files(tmp_path)] == ["suspect", "suspect", "full"]


def test_a_suspect_copy_gives_way_to_a_full_one(rig, tmp_path):
    stream, manager, worker = rig
    stream.fail(0, ("stall_close", 188 * 100, 0.1), ("body", stream.entries[0].data[:1000]))
    poll_once(manager, worker)
    assert [s.type for s in files(tmp_path)] == ["full"] * 3


def test_a_segment_that_is_gone_is_given_up_and_nothing_written(
    rig, tmp_path, metrics, give_up_soon
):
    stream, manager, worker = rig
    stream.fail(1, *[("status", 404)] * 100_000)
    poll_once(manager, worker)
    assert len(files(tmp_path)) == 2
    assert errors(metrics, "gave_up") == 1
    assert errors(metrics, "segment_gone") >= 2
    assert stored(tmp_path, include_temp=True) == stored(tmp_path)


def test_stopping_keeps_what_arrived_and_leaves_no_temp_files(rig, tmp_path):
    stream, manager, worker = rig
    stream.fail(0, *[("reset", 188 * 7)] * 1000)
    worker.handle(worker.fetch())
    getter = next(g.getter for g in manager.getters if g.getter.placed.segment.sequence == 0)
    # Let the getter fail at least once, then stop everything.
    wait_for(lambda: len(origin_statuses(stream, 0)) >= 2, interval=0.005, what="a retry")
    manager._stop_everything()
    assert not manager.getters
    assert getter.path is not None and "-partial-" in getter.path
    assert stored(tmp_path, include_temp=True) == stored(tmp_path)


def test_soft_timeout_starts_a_parallel_attempt_that_wins(rig, tmp_path, metrics, monkeypatch):
    stream, manager, worker = rig
    monkeypatch.setattr(getter, "SEGMENT_TIMEOUTS", (0.2, 30))
    stream.fail(0, ("slow", 30))  # the first request hangs before answering
    poll_once(manager, worker)
    assert [s.type for s in files(tmp_path)] == ["full"] * 3
    with open(files(tmp_path)[0].path, "rb") as f:
        assert f.read() == stream.entries[0].data
    assert attempts(metrics, "soft_timeout") == 1
    # The slow attempt was abandoned while still waiting: the origin would have
    # logged its 200 only after the 30 s sleep.
    assert origin_statuses(stream, 0) == ["slow", 200]


def test_hard_timeout_abandons_an_attempt_and_retries(rig, tmp_path, metrics, monkeypatch, caplog):
    stream, manager, worker = rig
    monkeypatch.setattr(getter, "SEGMENT_TIMEOUTS", (30, 0.3))
    stream.fail(0, ("trickle", 30))  # dribbles bytes, never finishes in time
    poll_once(manager, worker)
    assert "hard timeout" in caplog.text
    assert [s.type for s in files(tmp_path)] == ["full"] * 3  # the partial gave way
    assert errors(metrics, "partial") == 1
    assert attempts(metrics, "retry") == 1
