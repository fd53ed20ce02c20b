"""Managers and workers against a fault-injecting origin, run for real in greenlets.

The origin's playlists are advanced by the test; the manager polls with
shortened intervals (`fast`), and each step waits, with a deadline, for what it
expects to appear in the store, or steps through the workers' polls
(`poll_steps`, the workers' `wait` seam).
"""

import datetime
import logging
import os

import gevent
import pytest

from common.segments import get_best_segments
from downloader import main
from tests.downloader.conftest import errors, make_manager, sample, segments_in, stored
from tests.util import wait_for


class Recorder:
    """A manager running in a greenlet over the origin's channel `ch`."""

    def __init__(self, origin, metrics, base_dir, qualities=("source",), url=None):
        self.base_dir = str(base_dir)
        self.manager = make_manager(origin, metrics, base_dir, qualities, url)
        self.greenlet = gevent.spawn(self.manager.run)

    def segments(self, quality="source"):
        return segments_in(self.base_dir, quality=quality)

    def wait_for_count(self, count, quality="source"):
        wait_for(lambda: len(self.segments(quality)) >= count, what=f"{count} {quality} segments")
        return self.segments(quality)

    def stop(self):
        self.manager.stop()
        self.greenlet.join(timeout=10)
        assert self.greenlet.dead
        assert stored(self.base_dir, include_temp=True) == stored(self.base_dir)


@pytest.fixture
def recorder(origin, metrics, tmp_path, fast):
    recorders = []

    def make(**kwargs):
        recorders.append(Recorder(origin, metrics, tmp_path, **kwargs))
        return recorders[-1]

    yield make
    for r in recorders:
        r.stop()


def assert_contiguous(recorder, entries, quality="source"):
    """The store covers the entries' whole time range with no hole."""
    start = entries[0].pdt
    end = entries[-1].pdt + datetime.timedelta(seconds=entries[-1].duration)
    best = get_best_segments(os.path.join(recorder.base_dir, "ch", quality), start, end)
    assert None not in best, best
    assert len(best) == len(entries)


def test_records_every_quality_and_ignores_repeats_and_backwards(origin, recorder, poll_steps):
    streams = origin.add_channel("ch", ["source", "480p"])
    for stream in streams.values():
        stream.publish(3)
    r = recorder(qualities=("source", "480p"))
    r.wait_for_count(3, "source")
    r.wait_for_count(3, "480p")
    source = streams["source"]
    # The origin serves a stale copy (backwards), then repeats itself: nothing new.
    stale = source.render(source.entries[:2])
    source.frozen = stale
    poll_steps.after(4)  # the worker read it (its first poll may have begun before)
    source.frozen = None
    source.publish(2)
    r.wait_for_count(5)
    assert_contiguous(r, source.entries)
    assert len(r.segments()) == 5
    for sequence in range(5):
        assert origin.requests_for(f"/ch/source/{sequence}.ts") == [200]


def test_expired_playlist_url_is_replaced_without_a_gap(origin, recorder, metrics):
    stream = origin.add_channel("ch")["source"]
    stream.expire_after = 4  # each token's playlist works 4 times, then 403
    stream.publish(2)
    r = recorder()
    for count in range(3, 12):
        stream.publish(1)
        r.wait_for_count(count)
    assert_contiguous(r, stream.entries)
    assert 403 in origin.requests_for("/ch/source/index.m3u8")
    assert len(origin.requests_for("/ch/master.m3u8")) >= 3
    assert errors(metrics, "playlist_expired") >= 2


def test_workers_are_replaced_before_their_url_expires_with_overlap(origin, recorder, monkeypatch):
    monkeypatch.setattr(main, "MAX_WORKER_AGE", 0.05)
    stream = origin.add_channel("ch")["source"]
    stream.publish(2)
    r = recorder()
    for count in range(3, 10):
        stream.publish(1)
        r.wait_for_count(count)
    assert len(origin.requests_for("/ch/master.m3u8")) >= 3
    assert_contiguous(r, stream.entries)
    starts = [s.start for s in r.segments()]
    assert len(starts) == len(set(starts)) == 9
    for sequence in range(9):  # overlapping workers share one timeline: one fetch each
        assert origin.requests_for(f"/ch/source/{sequence}.ts") == [200]


def test_ads_are_never_stored(origin, recorder, metrics):
    stream = origin.add_channel("ch")["source"]
    stream.window = 10
    stream.publish(2)
    ad_start = stream.next_pdt
    daterange = (
        '#EXT-X-DATERANGE:ID="stitched-ad-7-4.000",CLASS="twitch-stitched-ad",'
        f'START-DATE="{ad_start.isoformat()}",DURATION=4.000'
    )
    stream.publish(2, title="Amazon|7", tags=[daterange, "#EXT-X-DISCONTINUITY"])
    stream.publish(1, tags=["#EXT-X-DISCONTINUITY"])
    stream.publish(1, tags=["#EXT-X-CUE-OUT:2.000"])
    stream.publish(1, tags=["#EXT-X-CUE-IN"])
    r = recorder()
    r.wait_for_count(4)
    wait_for(
        lambda: (
            sum(
                sample(
                    metrics,
                    "downloader_ad_segments_skipped_total",
                    channel="ch",
                    quality="source",
                    kind=k,
                )
                for k in ("twitch_title", "scte35_cue")
            )
            == 3
        ),
        what="ads counted",
    )
    starts = {s.start for s in r.segments()}
    ads = [e for e in stream.entries if e.title.startswith("Amazon")] + [stream.entries[5]]
    assert not starts & {e.pdt for e in ads}
    assert all(not any(f"/{e.sequence}.ts" in p for p, _ in origin.log) for e in ads)


def test_offline_channel_is_retried_until_it_comes_back(origin, recorder):
    channel_streams = origin.add_channel("ch")
    origin.channels["ch"].offline = True
    r = recorder()
    wait_for(lambda: len(origin.requests_for("/ch/master.m3u8")) >= 3, what="retries while offline")
    assert set(origin.requests_for("/ch/master.m3u8")) == {404}
    origin.channels["ch"].offline = False
    channel_streams["source"].publish(2)
    r.wait_for_count(2)


def test_stream_end_and_restart_with_a_time_jump(origin, recorder):
    stream = origin.add_channel("ch")["source"]
    stream.publish(3)
    r = recorder()
    r.wait_for_count(3)
    stream.ended = True
    first_run = list(stream.entries)
    # While it stays ended the manager keeps checking, backing off more each time.
    wait_for(lambda: r.manager.failures >= 3, what="backing off after the end")
    # The encoder restarts: sequence numbers from 0 again, broadcast time 1 min later.
    with stream.lock:
        stream.entries = []
        stream.next_sequence = 0
        stream.ended = False
    second_run = stream.publish(3, gap=60)
    segments = r.wait_for_count(6)
    assert r.manager.failures == 0
    assert [s.start for s in segments] == [e.pdt for e in first_run + second_run]
    assert_contiguous(r, first_run)
    assert_contiguous(r, second_run)


def test_playlist_without_program_date_time_is_recorded_with_a_warning(
    origin, recorder, metrics, caplog
):
    stream = origin.add_channel("ch")["source"]
    stream.with_pdt = False
    stream.publish(3)
    with caplog.at_level(logging.WARNING):
        r = recorder()
        segments = r.wait_for_count(3)
        stream.publish(2)
        segments = r.wait_for_count(5)
    assert "no EXT-X-PROGRAM-DATE-TIME" in caplog.text
    assert (
        sample(metrics, "downloader_segments_estimated_time_total", channel="ch", quality="source")
        == 5
    )
    for a, b in zip(segments, segments[1:], strict=False):
        assert a.end == b.start
    assert abs(segments[-1].end - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(
        seconds=5
    )


def test_encrypted_playlist_is_refused_and_retried(origin, recorder, metrics, caplog):
    stream = origin.add_channel("ch")["source"]
    stream.extra_header = ['#EXT-X-KEY:METHOD=AES-128,URI="key.bin"']
    stream.publish(3)
    with caplog.at_level(logging.ERROR):
        r = recorder()
        wait_for(lambda: len(origin.requests_for("/ch/master.m3u8")) >= 2, what="a retry")
    assert "encrypted segments (EXT-X-KEY AES-128)" in caplog.text
    assert errors(metrics, "unsupported_playlist") >= 1
    assert r.segments() == []
    assert not any(p.endswith(".ts") for p, _ in origin.log)


def test_media_playlist_url_is_quality_source_and_missing_qualities_are_counted(
    origin, recorder, metrics
):
    stream = origin.add_channel("ch")["source"]
    stream.publish(2)
    r = recorder(qualities=("source", "720p"), url=origin.media_url("ch", "source"))
    r.wait_for_count(2)
    assert errors(metrics, "quality_missing", quality="720p") >= 1


def test_failing_playlist_is_retried(origin, recorder, metrics):
    stream = origin.add_channel("ch")["source"]
    stream.publish(2)
    stream.playlist_faults = [("status", 500), ("reset", 10), ("body", b"<html>oops</html>")]
    r = recorder()
    r.wait_for_count(2)
    assert errors(metrics, "playlist_fetch") >= 2
    assert errors(metrics, "bad_playlist") == 1


def test_a_crashed_worker_is_restarted(origin, recorder, metrics, monkeypatch):
    stream = origin.add_channel("ch")["source"]
    stream.publish(2)
    real_handle = main.QualityWorker.handle
    crashes = []

    def handle(self, playlist):
        if not crashes:
            crashes.append(self)
            raise RuntimeError("a bug")
        return real_handle(self, playlist)

    monkeypatch.setattr(main.QualityWorker, "handle", handle)
    r = recorder()
    r.wait_for_count(2)
    assert crashes
    assert errors(metrics, "worker_crash") == 1


def test_two_recorders_of_one_stream_make_one_file_per_segment(origin, recorder, metrics):
    stream = origin.add_channel("ch")["source"]
    stream.window = 10
    stream.publish(5)
    first = recorder()
    recorder()  # a second manager with its own timeline, writing to the same store
    wait_for(
        lambda: (
            sample(
                metrics, "downloader_segments_total", channel="ch", quality="source", type="full"
            )
            == 10
        ),
        what="both recorders to write every segment",
    )
    assert all(origin.requests_for(f"/ch/source/{n}.ts") == [200, 200] for n in range(5))
    assert len(first.segments()) == 5
    assert_contiguous(first, stream.entries)
