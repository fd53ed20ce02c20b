"""The cutter's loop, in-process and step by step, against real PostgreSQL, ffmpeg and files."""

import datetime
import errno
import logging
import os

import gevent
import psycopg2
import pytest

import common.cut
import cutter.main
from cutter.jobs import Jobs, State
from cutter.main import Cutter, ProcessingWatcher
from cutter.upload_backends import (
    LocalBackend,
    RetryableUploadError,
    UploadOutcomeUnknown,
    parse_location,
)
from tests.common.cutcheck import decode_warnings
from tests.conftest import MEDIA_START
from tests.cutter.conftest import (
    CHANNEL,
    QUALITY,
    fresh_database,
    job_fields,
    pg_lock,
    probe,
    wait_for,
    within_a_frame,
)
from tests.media import add_to_store


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0


@pytest.fixture
def outdir(tmp_path):
    return str(tmp_path / "clips")


def make_cutter(jobs, store, outdir, registry, backend=None, name="node1", **kwargs):
    backend = backend or LocalBackend("clips", outdir)
    kwargs.setdefault("listen", False)
    return Cutter(jobs, store, name, {backend.name: backend}, registry, **kwargs)


def test_job_is_cut_and_uploaded(jobs, store, outdir, registry):
    # Across segment joins and the hour boundary (MEDIA_START is 13:59:42).
    job = jobs.submit(**job_fields(start=10.2, end=21.7, title="Across the hour!"))
    cutter = make_cutter(jobs, store, outdir, registry)
    cutter.start()
    assert cutter.run_once() is True
    done = jobs.get(job.id)
    assert done.state == State.DONE, done.error
    assert done.uploader is None and done.error is None and done.attempts == 1
    assert done.video_id == f"{job.id}-across-the-hour.ts"
    path = os.path.join(outdir, done.video_id)
    assert done.video_link == "file://" + path
    assert os.listdir(outdir) == [done.video_id]  # no spool file left behind
    assert os.stat(path).st_mode & 0o777 == 0o644  # readable by the web server serving it
    duration, errors = probe(path)
    assert within_a_frame(duration, 11.5), duration
    assert errors == ""
    assert cutter.run_once() is False  # nothing more to do
    assert sample(registry, "cutter_jobs_claimed_total", location="clips") == 1
    assert sample(registry, "cutter_jobs_cut_total", location="clips") == 1
    assert sample(registry, "cutter_jobs_uploaded_total", location="clips", state="DONE") == 1
    assert sample(registry, "cutter_cut_latency_count", location="clips", error="") == 1
    assert (
        sample(registry, "cutter_upload_latency_normalized_count", location="clips", error="") == 1
    )
    assert sample(registry, "cutter_jobs_by_state", state="DONE") == 1  # as of the last pass


def test_url_prefix_and_cut_type(jobs, store, outdir, registry):
    backend = parse_location(
        f"clips=local:{outdir},url_prefix=https://example.org/c/,cut_type=full"
    )
    assert backend.cut_type == "full"
    job = jobs.submit(**job_fields(start=1, end=4, title="Full cut"))
    make_cutter(jobs, store, outdir, registry, backend).run_once()
    done = jobs.get(job.id)
    assert done.video_link == f"https://example.org/c/{job.id}-full-cut.ts"
    duration, errors = probe(os.path.join(outdir, done.video_id))
    assert within_a_frame(duration, 3) and errors == ""


def test_start_removes_own_stale_spool_files(jobs, store, outdir, registry):
    os.makedirs(outdir)
    names = [".cut-node1-a.ts", ".cut-node1-b.mp4", ".cut-node2-c.mp4", "1-clip.mp4"]
    for name in names:
        open(os.path.join(outdir, name), "wb").close()
    make_cutter(jobs, store, outdir, registry).start()
    # This cutter's spool files of either container go; another cutter's and videos stay.
    assert sorted(os.listdir(outdir)) == [".cut-node2-c.mp4", "1-clip.mp4"]


@pytest.fixture(scope="module")
def fmp4_store(fmp4_media, tmp_path_factory):
    """`fmp4_store(codec)`: a store holding 6 s of fMP4 `codec` media from MEDIA_START."""
    made = {}

    def get(codec):
        if codec not in made:
            made[codec] = str(tmp_path_factory.mktemp(f"fmp4-store-{codec}"))
            add_to_store(made[codec], CHANNEL, QUALITY, MEDIA_START, fmp4_media(codec))
        return made[codec]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["av1", "hevc"])
def test_fmp4_job_is_cut_to_mp4(jobs, fmp4_store, outdir, registry, codec):
    # AV1 cannot be cut to .ts at all: an fMP4 range is cut to .mp4, whatever its codec.
    job = jobs.submit(**job_fields(start=0.5, end=4.5, title=f"{codec} clip"))
    assert make_cutter(jobs, fmp4_store(codec), outdir, registry).run_once() is True
    done = jobs.get(job.id)
    assert done.state == State.DONE, done.error
    assert done.video_id == f"{job.id}-{codec}-clip.mp4"
    path = os.path.join(outdir, done.video_id)
    assert os.listdir(outdir) == [done.video_id]  # the .mp4 spool file went too
    with open(path, "rb") as f:
        assert f.read(8)[4:] == b"ftyp"  # an MP4 file (MPEG-TS starts with 0x47 packets)
    duration, errors = probe(path)
    assert within_a_frame(duration, 4), duration
    assert errors == "" and decode_warnings(path) == ""


@pytest.fixture(scope="module")
def holey_store(media, tmp_path_factory):
    """The shared media with its third segment (12 s to 18 s) missing."""
    base = str(tmp_path_factory.mktemp("holey-store"))
    add_to_store(base, CHANNEL, QUALITY, MEDIA_START, media[:2])
    start = MEDIA_START + sum((d for _, d in media[:3]), datetime.timedelta())
    add_to_store(base, CHANNEL, QUALITY, start, media[3:])
    return base


def test_holes_are_reported_not_claimed(jobs, holey_store, outdir, registry):
    job = jobs.submit(**job_fields(start=8, end=20))
    cutter = make_cutter(jobs, holey_store, outdir, registry)
    assert cutter.run_once() is False
    waiting = jobs.get(job.id)
    assert waiting.state == State.EDITED and waiting.attempts == 0
    assert waiting.error == (
        "node1: the range has 1 hole (2026-11-28T13:59:54.000000Z to "
        "2026-11-28T14:00:00.000000Z) in its store; waiting for the data, or allow holes"
    )
    assert sample(registry, "cutter_jobs_skipped_total", location="clips", reason="holes") == 1
    assert not os.path.exists(outdir) or os.listdir(outdir) == []


def test_holes_allowed(jobs, holey_store, outdir, registry):
    job = jobs.submit(**job_fields(start=8, end=20, allow_holes=True))
    assert make_cutter(jobs, holey_store, outdir, registry).run_once() is True
    done = jobs.get(job.id)
    assert done.state == State.DONE, done.error
    duration, errors = probe(os.path.join(outdir, done.video_id))
    assert within_a_frame(duration, 6), duration  # 12 s asked, 6 s of it missing
    assert errors == ""


def test_no_content(jobs, store, outdir, registry):
    job = jobs.submit(**job_fields(channel="elsewhere"))
    assert make_cutter(jobs, store, outdir, registry).run_once() is False
    assert jobs.get(job.id).error == "node1: no segments of this range in its store"


def test_cut_error_needs_a_person(jobs, store, outdir, registry, monkeypatch):
    def broken_cut(*args, **kwargs):
        raise common.cut.CutError("segments are not concatenable")

    monkeypatch.setattr(common.cut, "cut", broken_cut)
    job = jobs.submit(**job_fields())
    make_cutter(jobs, store, outdir, registry).run_once()
    failed = jobs.get(job.id)
    assert failed.state == State.UNEDITED and failed.uploader is None
    assert failed.error == "cut failed: segments are not concatenable"
    assert sample(registry, "cutter_jobs_failed_total", location="clips", state="UNEDITED") == 1
    assert os.listdir(outdir) == []


class FlakyBackend(LocalBackend):
    """A local location whose uploads fail as told (before or after finalizing)."""

    def __init__(self, *args, error, after_finalizing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.error = error
        self.after_finalizing = after_finalizing

    def upload(self, job, path, finalizing, stopping):
        if self.after_finalizing:
            finalizing()
        raise self.error


def test_retryable_errors_retry_then_stop(jobs, store, outdir, registry, monkeypatch):
    monkeypatch.setattr(cutter.main, "MAX_ATTEMPTS", 2)
    backend = FlakyBackend("clips", outdir, error=RetryableUploadError("HTTP 503 backendError"))
    cut = make_cutter(jobs, store, outdir, registry, backend)
    job = jobs.submit(**job_fields())
    cut.run_once()
    retrying = jobs.get(job.id)
    assert retrying.state == State.EDITED and retrying.attempts == 1
    assert retrying.error == "upload failed: HTTP 503 backendError (will retry)"
    assert retrying.retry_at > retrying.updated_at + datetime.timedelta(seconds=8)
    assert cut.run_once() is False  # waiting out the retry delay
    jobs.db.query("UPDATE events SET retry_at = now() WHERE id = %(id)s", {"id": job.id})
    assert cut.run_once() is True
    gave_up = jobs.get(job.id)
    assert gave_up.state == State.UNEDITED and gave_up.attempts == 2
    assert gave_up.error == "upload failed: HTTP 503 backendError (gave up after 2 attempts)"
    assert sample(registry, "cutter_jobs_failed_total", location="clips", state="EDITED") == 1
    assert sample(registry, "cutter_jobs_failed_total", location="clips", state="UNEDITED") == 1


def test_unknown_outcome_waits_for_an_operator(jobs, store, outdir, registry):
    backend = FlakyBackend(
        "clips", outdir, error=UploadOutcomeUnknown("connection dropped"), after_finalizing=True
    )
    cut = make_cutter(jobs, store, outdir, registry, backend)
    job = jobs.submit(**job_fields())
    cut.run_once()
    flagged = jobs.get(job.id)
    assert flagged.state == State.FINALIZING and flagged.uploader == "node1"
    assert "may or may not have completed (connection dropped)" in flagged.error
    assert cut.run_once() is False
    assert jobs.get(job.id) == flagged  # never retried on its own
    assert sample(registry, "cutter_jobs_failed_total", location="clips", state="FINALIZING") == 1
    assert jobs.reset(job.id).state == State.EDITED  # the operator checked: nothing was made


def test_never_overwrites_an_upload(jobs, store, outdir, registry):
    job = jobs.submit(**job_fields(title="Twice"))
    os.makedirs(outdir)
    existing = os.path.join(outdir, f"{job.id}-twice.ts")
    with open(existing, "wb") as f:
        f.write(b"the first upload")
    make_cutter(jobs, store, outdir, registry).run_once()
    failed = jobs.get(job.id)
    assert failed.state == State.UNEDITED and "already exists" in failed.error
    with open(existing, "rb") as f:
        assert f.read() == b"the first upload"
    assert sorted(os.listdir(outdir)) == [f"{job.id}-twice.ts"]


def test_cancel_while_cutting(jobs, store, outdir, registry, monkeypatch):
    real_cut = common.cut.cut
    job = jobs.submit(**job_fields())

    def cut_then_cancel(*args, **kwargs):
        jobs.cancel(job.id)  # the editor cancels while the cutter is busy
        return real_cut(*args, **kwargs)

    monkeypatch.setattr(common.cut, "cut", cut_then_cancel)
    make_cutter(jobs, store, outdir, registry).run_once()
    cancelled = jobs.get(job.id)
    assert cancelled.state == State.UNEDITED and cancelled.error == "cancelled"
    assert os.listdir(outdir) == []
    assert sample(registry, "cutter_jobs_lost_total", location="clips") == 1


def test_another_cutter_wins(jobs, store, outdir, registry):
    job = jobs.submit(**job_fields())
    cut = make_cutter(jobs, store, outdir, registry)
    found = jobs.find_claimable(["clips"])
    jobs.claim(found[0], "node2")
    assert cut.run_once() is False
    assert jobs.get(job.id).uploader == "node2"


def test_start_recovers_own_jobs(jobs, store, outdir, registry):
    claimed = jobs.claim(jobs.submit(**job_fields()), "node1")
    finalizing = jobs.start_finalizing(jobs.claim(jobs.submit(**job_fields()), "node1"), "node1")
    make_cutter(jobs, store, outdir, registry).start()
    assert jobs.get(claimed.id).state == State.EDITED
    assert jobs.get(finalizing.id).state == State.FINALIZING
    assert "check whether the video was made" in jobs.get(finalizing.id).error


def listening(jobs):
    rows = jobs.db.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'idle' AND query LIKE 'LISTEN %%'"
    ).rows
    return bool(rows)


def test_notification_wakes_the_cutter(jobs, store, outdir, registry):
    # Polling once an hour: only the NOTIFY can make it notice the job.
    cut = make_cutter(jobs, store, outdir, registry, listen=True, poll_interval=3600)
    runner = gevent.spawn(cut.run)
    try:
        wait_for(lambda: listening(jobs), what="the cutter to LISTEN")
        job = jobs.submit(**job_fields(start=2, end=5))
        wait_for(lambda: jobs.get(job.id).state == State.DONE, what="the job to be done")
    finally:
        cut.stop()
        runner.join(timeout=10)
    assert runner.dead and runner.exception is None


def test_jobs_this_node_cannot_cut_hide_nothing(jobs, store, outdir, registry, monkeypatch):
    monkeypatch.setattr(cutter.main, "BATCH_SIZE", 2)
    for _ in range(3):
        jobs.submit(**job_fields(channel="elsewhere"))
    good = jobs.submit(**job_fields())
    assert make_cutter(jobs, store, outdir, registry).run_once() is True
    assert jobs.get(good.id).state == State.DONE
    assert jobs.counts()[State.EDITED] == 3


def test_stop_while_cutting_gives_the_job_back(jobs, store, outdir, registry, monkeypatch):
    real_cut = common.cut.cut
    cut = make_cutter(jobs, store, outdir, registry)

    def cut_then_stop(*args, **kwargs):
        chunks = real_cut(*args, **kwargs)
        cut.stop()  # SIGTERM arrives mid-cut
        return chunks

    monkeypatch.setattr(common.cut, "cut", cut_then_stop)
    job = jobs.submit(**job_fields())
    cut.run_once()
    given_back = jobs.get(job.id)
    assert given_back.state == State.EDITED and given_back.uploader is None
    assert given_back.retry_at <= given_back.updated_at  # any cutter may take it at once
    assert os.listdir(outdir) == []


@pytest.mark.parametrize("committed", [True, False])
def test_connection_lost_during_a_change(jobs, store, outdir, registry, monkeypatch, committed):
    """The connection breaks as FINALIZING is written: the cutter reads the row back to learn
    whether the change was made, and neither gives up the job nor makes the change twice."""
    real = jobs.start_finalizing
    calls = []

    def breaks(job, uploader):
        calls.append(job.id)
        if len(calls) == 1:
            if committed:
                real(job, uploader)
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return real(job, uploader)

    monkeypatch.setattr(jobs, "start_finalizing", breaks)
    job = jobs.submit(**job_fields())
    make_cutter(jobs, store, outdir, registry).run_once()
    assert jobs.get(job.id).state == State.DONE
    assert len(calls) == (1 if committed else 2)
    assert sample(registry, "cutter_database_errors_total") == 1


def test_filesystem_without_hard_links(jobs, store, outdir, registry, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    job = jobs.submit(**job_fields(title="Renamed"))
    make_cutter(jobs, store, outdir, registry).run_once()
    done = jobs.get(job.id)
    assert done.state == State.DONE
    assert os.listdir(outdir) == [done.video_id]


def test_a_job_that_cannot_be_cut_fails_alone(jobs, store, outdir, registry):
    """A row no submission would accept (year 1, written by hand) stops only itself."""
    (bad,) = jobs.db.query(
        'INSERT INTO events (channel, quality, start, "end", title, upload_location) '
        "VALUES ('desertbus', 'source', '0001-01-01T00:00:00Z', '0001-01-01T00:01:00Z', "
        "'Broken', 'clips') RETURNING id"
    ).rows
    good = jobs.submit(**job_fields())
    cutter = make_cutter(jobs, store, outdir, registry)
    cutter.start()
    while cutter.run_once():
        pass
    failed = jobs.get(bad["id"])
    assert failed.state == State.UNEDITED and failed.error.startswith("cannot cut this range")
    assert jobs.get(good.id).state == State.DONE


def test_first_start_on_a_new_database_logs_no_error(store, outdir, registry, caplog):
    """The processing watcher waits for the schema the cutter is creating: no traceback."""
    with pg_lock(), fresh_database("template0") as dsn:
        jobs = Jobs(dsn)
        cutter = make_cutter(jobs, store, outdir, registry, poll_interval=0.2)
        watcher = ProcessingWatcher(
            jobs, "node1", cutter.backends, interval=0.05, metrics=cutter.metrics,
            ready=cutter.ready,
        )  # fmt: skip
        watching = gevent.spawn(watcher.run)
        gevent.sleep(0.3)  # the watcher's first polls, had it not waited
        cutting = gevent.spawn(cutter.run)
        wait_for(cutter.ready.is_set, what="the schema")
        job = jobs.submit(**job_fields())
        wait_for(lambda: jobs.get(job.id).state == State.DONE, what="the job to be done")
        gevent.sleep(0.2)  # some passes of the watcher over the new schema
        cutter.stop()
        watcher.stop()
        gevent.joinall([watching, cutting], timeout=10)
        jobs.db.close()
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
