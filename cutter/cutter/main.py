"""streamvault cutter: cut jobs claimed from PostgreSQL, cut from the local store, uploaded once.

Reads top to bottom: the tunables; `Cutter`, the loop that finds, claims,
cuts and uploads jobs; `ProcessingWatcher`, which follows uploaded videos
until the backend has processed them; then `cutter run`'s command line (the
operator's commands are in commands.py).

How it fails, and what it does (docs/DATABASE.md has the states):

- Two cutters want one job: the claim is a single guarded UPDATE; the loser
  gets no row and moves on. Nothing is cut before the claim succeeds.
- The local store lacks part of the range: the job is not claimed; its `error`
  says what is missing, so the editor can show it, and a cutter that has the
  data can still take it.
- The cut fails: the job goes to UNEDITED with the reason (a person must look).
- The upload fails before the final request: the job goes back to EDITED, for
  any cutter to retry after a growing delay; after `MAX_ATTEMPTS` claims it
  goes to UNEDITED instead, so a job that always fails does not loop forever.
- Anything after FINALIZING began is never retried on its own: a refusal
  proves nothing was made (UNEDITED); anything else leaves the job FINALIZING
  with an `error` for an operator, who checks and runs `cutter reset`.
- The cutter dies: on its next start it returns its CLAIMED jobs to EDITED and
  flags its FINALIZING ones for an operator.
- The database goes away: every query waits for it to come back (with
  backoff, on the stop event), then carries on. A change whose statement was
  in flight when the connection broke is checked by re-reading the row.
"""

import argparse
import contextlib
import datetime
import logging
import os
import sys
import tempfile

import gevent
import gevent.event
import gevent.socket
import prometheus_client
import psycopg2.errors
from prometheus_client import Counter, Gauge

import common.cut
import common.cut_mp4
from common.backoff import jitter
from common.database import CONNECTION_ERRORS, Database, connect, one_line, query
from common.segments import get_best_segments
from common.server import WSGIServer
from common.service import Stoppable, base_parser, run_service, setup_logging
from common.stats import timed

from . import commands
from .api import DEFAULT_LIMITS
from .editors import SESSION_LIFETIME, Editors
from .jobs import (
    NOTIFY_CHANNEL,
    JobGone,
    JobNotFound,
    Jobs,
    State,
    format_time,
)
from .redact import redact
from .upload_backends import (
    PermanentUploadError,
    RetryableUploadError,
    parse_location,
)

logger = logging.getLogger(__name__)

# Seconds between looks for claimable jobs when no notification arrives.
# Cutters LISTEN for new jobs, so this only bounds the delay when a
# notification is lost (e.g. while reconnecting) or a retry delay ends.
POLL_INTERVAL = 10
# Seconds between asking the backend about videos it is still processing.
# YouTube takes minutes to process an hour of video; asking more often only
# spends API quota.
PROCESSING_POLL_INTERVAL = 30
# Claims before a job that keeps failing retryably is stopped for a person.
MAX_ATTEMPTS = 5
# Seconds before a retryably failed job may be claimed again, by attempt:
# long enough for a flaky network to settle, short enough for a volunteer
# waiting on a clip.
RETRY_DELAYS = (10, 30, 90, 300)
# Seconds to wait after an unexpected error in the loop, so a bug shows as a
# log line every few seconds rather than a busy loop.
ERROR_WAIT = 5
# Jobs looked at per pass.
BATCH_SIZE = 20
# Spool files are named after the cut's container (`common.cut_mp4.output_container`).
SPOOL_SUFFIXES = tuple(f".{c}" for c in common.cut_mp4.CONTAINERS)


class Stopping(Exception):
    """The cutter was asked to stop while waiting for the database."""


class StopRequested(Exception):
    """The cutter was asked to stop while cutting: the cut is abandoned, the job given back."""


class Metrics:
    """The cutter's metrics, in one registry (a fresh one per test)."""

    def __init__(self, registry):
        self.claimed = Counter(
            "cutter_jobs_claimed", "Jobs claimed by this cutter", ["location"], registry=registry
        )
        self.cut = Counter(
            "cutter_jobs_cut", "Jobs cut successfully", ["location"], registry=registry
        )
        self.uploaded = Counter(
            "cutter_jobs_uploaded",
            "Jobs uploaded, by the state they were left in (DONE or TRANSCODING)",
            ["location", "state"],
            registry=registry,
        )
        self.failed = Counter(
            "cutter_jobs_failed",
            "Jobs that failed, by the state they were left in "
            "(EDITED: will be retried; UNEDITED: a person must look; FINALIZING: an operator)",
            ["location", "state"],
            registry=registry,
        )
        self.skipped = Counter(
            "cutter_jobs_skipped",
            "Times a job was not claimed because this node's store cannot cut it",
            ["location", "reason"],
            registry=registry,
        )
        self.lost = Counter(
            "cutter_jobs_lost",
            "Claimed jobs dropped because they were cancelled or changed meanwhile",
            ["location"],
            registry=registry,
        )
        self.processed = Counter(
            "cutter_jobs_processed",
            "Uploaded videos whose backend processing ended, by outcome (DONE or UNEDITED)",
            ["location", "state"],
            registry=registry,
        )
        self.by_state = Gauge(
            "cutter_jobs_by_state", "Jobs in the database in each state", ["state"],
            registry=registry,
        )  # fmt: skip
        self.database_errors = Counter(
            "cutter_database_errors",
            "Queries that failed because the database could not be reached",
            registry=registry,
        )


def _job_seconds(result, job, *args, **kwargs):
    return job.duration.total_seconds()


def _job_location(result, job, *args, **kwargs):
    return job.upload_location


def describe_holes(segments, start, end):
    """A short, human-readable list of the missing parts of [start, end)."""
    holes = []
    for i, segment in enumerate(segments):
        if segment is not None:
            continue
        before = segments[i - 1] if i > 0 else None
        after = segments[i + 1] if i + 1 < len(segments) else None
        hole_start = before.end if before is not None else start
        hole_end = after.start if after is not None else end
        if before is not None and before.is_partial:
            hole_start = before.start  # its content stops short somewhere in it
        holes.append(f"{format_time(hole_start)} to {format_time(hole_end)}")
    shown = "; ".join(holes[:3]) + (f"; and {len(holes) - 3} more" if len(holes) > 3 else "")
    return f"{len(holes)} hole{'s' if len(holes) > 1 else ''} ({shown})"


class DatabaseUser(Stoppable):
    """Runs queries that wait out database outages instead of failing."""

    def __init__(self, jobs, metrics):
        super().__init__()
        self.jobs = jobs
        self.metrics = metrics

    def _wait_for_database(self, error):
        self.metrics.database_errors.inc()
        logger.warning("Lost the database (%s); waiting for it", one_line(error))
        if not self.jobs.db.wait_until_up(self.stopping):
            raise Stopping()

    def _read(self, fn, *args, **kwargs):
        """Run a read-only query, waiting for the database as long as it takes."""
        while True:
            try:
                return fn(*args, **kwargs)
            except CONNECTION_ERRORS as e:
                self._wait_for_database(e)

    def _write(self, fn, job, expect, *args, **kwargs):
        """Run a guarded change of `job`, waiting for the database as long as it takes.

        If the connection broke while the statement was in flight, the change
        may or may not have been committed. After reconnecting, the row is
        read back: if `expect(row)` holds, the change was made and the row is
        returned; otherwise the change is tried again (and, being guarded,
        raises JobGone if the job has moved on meanwhile).
        """
        while True:
            try:
                return fn(job, *args, **kwargs)
            except CONNECTION_ERRORS as e:
                self._wait_for_database(e)
                try:
                    current = self._read(self.jobs.get, job.id)
                except JobNotFound:
                    raise JobGone(f"job {job.id} was deleted") from None
                if expect(current):
                    return current


class Cutter(DatabaseUser):
    """Finds EDITED jobs for its locations, claims, cuts and uploads them, one at a time."""

    def __init__(
        self,
        jobs,
        base_dir,
        name,
        backends,
        registry=prometheus_client.REGISTRY,
        poll_interval=POLL_INTERVAL,
        listen=True,
        spool_dir=None,
    ):
        super().__init__(jobs, Metrics(registry))
        self.base_dir = base_dir
        self.name = name
        self.backends = backends
        self.registry = registry
        self.poll_interval = poll_interval
        self.listen = listen
        self.spool_dir = spool_dir
        # Spool files carry the cutter's name, so that on start it can remove
        # those a crash left behind without touching other cutters' (several
        # may share a location's directory).
        self._spool_prefix = f".cut-{name}-"
        self.wake = gevent.event.Event()
        # Set once the schema is applied and recovery done (see `start`):
        # whatever else reads the database waits for it.
        self.ready = gevent.event.Event()
        self.logger = logging.getLogger(f"cutter.cutter({name})")
        self.cut_to_file = timed(
            "cutter_cut",
            normalize=_job_seconds,
            registry=registry,
            location=_job_location,
        )(self._cut_to_file)
        self.upload = timed(
            "cutter_upload",
            normalize=_job_seconds,
            registry=registry,
            location=_job_location,
        )(self._upload)

    def stop(self):
        super().stop()
        self.wake.set()

    # --- the loop

    def run(self):
        listener = None
        try:
            try:
                self.start()
            except Stopping:
                return
            if self.listen:
                listener = gevent.spawn(self._listen)
            while not self.stopping.is_set():
                self.wake.clear()
                try:
                    worked = self.run_once()
                except Stopping:
                    break
                except CONNECTION_ERRORS as e:
                    try:
                        self._wait_for_database(e)
                    except Stopping:
                        break
                    continue
                except Exception:
                    self.logger.exception("Unexpected error; carrying on")
                    self.stopping.wait(jitter(ERROR_WAIT))
                    continue
                if not worked:
                    self.wake.wait(jitter(self.poll_interval))
        finally:
            if listener is not None:
                listener.kill()

    def start(self):
        """Apply the schema, recover this cutter's jobs and spool files from its last run."""
        self._remove_stale_spool_files()
        self._read(self.jobs.init_schema)
        self.ready.set()
        returned, flagged = self._read(self.jobs.recover, self.name)
        if returned:
            self.logger.info("Returned jobs %s, claimed before a restart, to EDITED", returned)
        if flagged:
            self.logger.warning(
                "Jobs %s were FINALIZING when this cutter stopped: an operator must check them",
                flagged,
            )

    def _remove_stale_spool_files(self):
        dirs = {
            b.temp_dir or self.spool_dir or tempfile.gettempdir() for b in self.backends.values()
        }
        for directory in dirs:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if name.startswith(self._spool_prefix) and name.endswith(SPOOL_SUFFIXES):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(directory, name))
                        self.logger.info("Removed %s, left by an earlier run", name)

    def run_once(self):
        """One pass: look at claimable jobs, do the first one this node can cut.

        Returns True if a job was claimed (so the caller looks again at once).
        """
        self._update_state_gauge()
        after_id = 0
        while True:
            page = self.jobs.find_claimable(self.backends, after_id, limit=BATCH_SIZE)
            if not page:
                return False
            for job in page:
                if self.stopping.is_set():
                    return False
                if self.try_job(job):
                    return True
            after_id = page[-1].id

    def try_job(self, job):
        """Claim and do `job` if this node can; True if it was claimed.

        A job whose range cannot even be looked up (a time the store's hour
        arithmetic cannot handle, from a database written by hand or an older
        version) fails alone: it is claimed and stopped for a person with the
        reason, and the pass goes on to the next job.
        """
        try:
            segments = self.check_store(job)
        except Exception as e:
            self.logger.exception("Job %d: cannot look up its range", job.id)
            claimed = self._write(self.jobs.claim, job, self._is_mine(State.CLAIMED), self.name)
            if claimed is not None:
                self._fail(claimed, f"cannot cut this range: {one_line(e)}", State.CLAIMED)
            return False
        if segments is None:
            return False
        claimed = self._write(self.jobs.claim, job, self._is_mine(State.CLAIMED), self.name)
        if claimed is None:
            self.logger.debug("Job %d: another cutter claimed it, or it changed", job.id)
            return False
        self.metrics.claimed.labels(job.upload_location).inc()
        self.logger.info(
            "Job %d: claimed (%s/%s %s + %.3fs to %s, attempt %d)",
            job.id, job.channel, job.quality, format_time(job.start),
            job.duration.total_seconds(), job.upload_location, claimed.attempts,
        )  # fmt: skip
        self.process(claimed, segments)
        return True

    def _update_state_gauge(self):
        for state, count in self.jobs.counts().items():
            self.metrics.by_state.labels(state.value).set(count)

    def _is_mine(self, state):
        return lambda row: row.state == state and row.uploader == self.name

    def check_store(self, job):
        """The segments to cut `job` from, or None (noting why on the job) if it cannot be."""
        hours_path = os.path.join(self.base_dir, job.channel, job.quality)
        segments = get_best_segments(hours_path, job.start, job.end)
        if all(segment is None for segment in segments):
            reason, error = "no_content", f"{self.name}: no segments of this range in its store"
        elif None in segments and not job.allow_holes:
            reason = "holes"
            error = (
                f"{self.name}: the range has {describe_holes(segments, job.start, job.end)} "
                "in its store; waiting for the data, or allow holes"
            )
        else:
            return segments
        self.metrics.skipped.labels(job.upload_location, reason).inc()
        if self._read(self.jobs.note_skip, job, error):
            self.logger.info("Job %d: not cutting: %s", job.id, error)
        return None

    def _listen(self):
        """Wake the loop when a job becomes EDITED (PostgreSQL NOTIFY), reconnecting as needed."""
        while not self.stopping.is_set():
            conn = None
            try:
                conn = connect(self.jobs.db.dsn)
                query(conn, f"LISTEN {NOTIFY_CHANNEL}")
                self.wake.set()  # anything may have happened while not listening
                while not self.stopping.is_set():
                    try:
                        gevent.socket.wait_read(conn.fileno(), timeout=self.poll_interval)
                    except TimeoutError:
                        pass  # poll anyway: a broken connection shows up there
                    conn.poll()
                    if any(n.payload in self.backends for n in conn.notifies):
                        self.wake.set()
                    conn.notifies.clear()
            except CONNECTION_ERRORS as e:
                self.logger.debug("Listening connection lost: %s", one_line(e))
                self.stopping.wait(jitter(min(self.poll_interval, 2)))
            except Exception:
                self.logger.exception("Listening for jobs failed")
                self.stopping.wait(jitter(ERROR_WAIT))
            finally:
                if conn is not None:
                    conn.close()

    # --- one job

    def process(self, job, segments):
        """Cut and upload a job this cutter has claimed, and record the outcome."""
        backend = self.backends[job.upload_location]
        location = job.upload_location
        spool_dir = backend.temp_dir or self.spool_dir
        # The spool file's extension is the cut's container: the backend names
        # and types the upload after it.
        container = common.cut_mp4.output_container(segments)
        fd, spool = tempfile.mkstemp(
            prefix=self._spool_prefix, suffix=f".{container}", dir=spool_dir
        )
        os.close(fd)
        held = {"state": State.CLAIMED}

        def finalizing():
            self._write(self.jobs.start_finalizing, job, self._is_mine(State.FINALIZING), self.name)
            held["state"] = State.FINALIZING

        try:
            try:
                self.cut_to_file(job, segments, spool, backend.cut_type, container)
            except (common.cut.CutError, ValueError) as e:
                self._fail(job, f"cut failed: {one_line(e)}", State.CLAIMED)
                return
            self.metrics.cut.labels(location).inc()
            if self.stopping.is_set():
                raise StopRequested()
            result = self.upload(job, backend, spool, finalizing)
            done = self._write(
                self.jobs.finish_upload,
                job,
                lambda row: row.state == result.state and row.video_id == result.video_id,
                self.name,
                result.state,
                result.video_id,
                result.video_link,
            )
            self.metrics.uploaded.labels(location, result.state.value).inc()
            self.logger.info("Job %d: uploaded: %s (%s)", job.id, done.video_link, done.state)
        except JobGone as e:
            self.metrics.lost.labels(location).inc()
            self.logger.info("Job %d: dropped: %s", job.id, e)
        except Stopping:
            self.logger.info("Job %d: stopping while waiting for the database", job.id)
        except StopRequested:
            # Abandon the cut rather than hold up the stop: another cutter (or
            # this one, restarted) does it again from the start.
            self._release(job, "the cutter stopped while cutting; given back", retry_seconds=0)
        except PermanentUploadError as e:
            self._fail(job, f"upload failed: {e}", held["state"])
        except Exception as e:
            if held["state"] == State.FINALIZING:
                self._flag(job, e)
            elif isinstance(e, (RetryableUploadError, OSError)):
                self._retry_or_fail(job, f"upload failed: {e}")
            else:
                self.logger.exception("Job %d: unexpected error", job.id)
                self._retry_or_fail(job, f"unexpected error: {type(e).__name__}: {one_line(e)}")
        except BaseException:
            # Killed (e.g. the service's stop timeout ran out): give the job
            # back if nothing irreversible started; a restart does it otherwise.
            if held["state"] == State.CLAIMED:
                with contextlib.suppress(Exception):
                    self.jobs.release(job, self.name, "the cutter stopped", 0)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(spool)

    def _cut_to_file(self, job, segments, path, cut_type, container="ts"):
        """Cut `job` into `path` with `common.cut`, as `container`; returns the size in bytes."""
        chunks = common.cut.cut(
            segments,
            job.start,
            job.end,
            type=cut_type,
            allow_holes=job.allow_holes,
            registry=self.registry,
            container=container,
        )
        size = 0
        try:
            with open(path, "wb") as f:
                for chunk in chunks:
                    if self.stopping.is_set():
                        raise StopRequested()
                    f.write(chunk)
                    size += len(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if size == 0:
            raise common.cut.CutError("the cut produced no data")
        return size

    def _upload(self, job, backend, path, finalizing):
        return backend.upload(job, path, finalizing, self.stopping)

    def _fail(self, job, error, from_state):
        self._guarded_outcome(
            self.jobs.fail, job, State.UNEDITED, error, self.name, error, from_state=from_state
        )

    def _release(self, job, error, retry_seconds):
        self._guarded_outcome(
            self.jobs.release, job, State.EDITED, error, self.name, error, retry_seconds
        )

    def _retry_or_fail(self, job, error):
        current = self._read(self.jobs.get, job.id)
        if current.attempts >= MAX_ATTEMPTS:
            self._fail(job, f"{error} (gave up after {current.attempts} attempts)", State.CLAIMED)
        else:
            delay = RETRY_DELAYS[min(current.attempts, len(RETRY_DELAYS)) - 1]
            self._release(job, f"{error} (will retry)", jitter(delay))

    def _flag(self, job, error):
        message = (
            f"the upload may or may not have completed ({one_line(error)}): check whether the "
            "video exists, then `cutter reset` or `cutter mark-done` the job"
        )
        self._guarded_outcome(
            self.jobs.flag_finalizing, job, State.FINALIZING, message, self.name, message
        )

    def _guarded_outcome(self, fn, job, new_state, error, *args, **kwargs):
        """Record a failure; log and count it. A job that moved meanwhile is left alone.

        The error is stored (and logged) redacted: no URL query strings or tokens.
        """
        error = redact(error)
        expect = lambda row: row.state == new_state and row.error == error  # noqa: E731
        try:
            self._write(fn, job, expect, *args, **kwargs)
        except JobGone as e:
            self.metrics.lost.labels(job.upload_location).inc()
            self.logger.info("Job %d: %s (while recording: %s)", job.id, e, error)
            return
        self.metrics.failed.labels(job.upload_location, new_state.value).inc()
        log = self.logger.warning if new_state == State.EDITED else self.logger.error
        log("Job %d: %s: %s", job.id, new_state.value, error)


class ProcessingWatcher(DatabaseUser):
    """Follows this cutter's TRANSCODING jobs until their backend says DONE or failed."""

    def __init__(
        self, jobs, name, backends, registry=prometheus_client.REGISTRY,
        interval=PROCESSING_POLL_INTERVAL, metrics=None, ready=None,
    ):  # fmt: skip
        super().__init__(jobs, metrics or Metrics(registry))
        # On a first start with a new database the cutter is still creating
        # the schema: polling before then was an UndefinedTable traceback.
        self.ready = ready
        self.name = name
        self.backends = backends
        self.interval = interval
        self.logger = logging.getLogger(f"cutter.processing({name})")

    def run(self):
        if self.ready is not None:
            gevent.wait([self.ready, self.stopping], count=1)
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Stopping:
                break
            except psycopg2.errors.UndefinedTable as e:
                self.logger.warning("The job schema is not there (%s); waiting for it", one_line(e))
            except Exception:
                self.logger.exception("Unexpected error checking processing; carrying on")
            self.stopping.wait(jitter(self.interval))

    def run_once(self):
        for job in self._read(self.jobs.list_transcoding, self.name, self.backends):
            result = self.backends[job.upload_location].check(job)
            if result is None or (not result.done and result.error is None):
                continue
            try:
                if result.done:
                    self._write(
                        self.jobs.finish_transcoding,
                        job,
                        lambda row: row.state == State.DONE,
                        self.name,
                    )
                    state = State.DONE
                    self.logger.info("Job %d: processed: %s", job.id, job.video_link)
                else:
                    self._write(
                        self.jobs.fail,
                        job,
                        lambda row: row.state == State.UNEDITED,
                        self.name,
                        result.error,
                        from_state=State.TRANSCODING,
                    )
                    state = State.UNEDITED
                    self.logger.error("Job %d: %s", job.id, result.error)
            except JobGone as e:
                self.logger.info("Job %d: %s", job.id, e)
                continue
            self.metrics.processed.labels(job.upload_location, state.value).inc()


# --- command line ---------------------------------------------------------------


def parse_args(argv=None):
    """`cutter run` (the service, below) and the operator's commands (`commands.py`)."""
    parser = argparse.ArgumentParser(prog="cutter", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = subparsers.add_parser(
        "run",
        parents=[base_parser("cutter run", "", metrics_port=8003)],
        description="Claim EDITED jobs for the given upload locations, cut them from the "
        "store in --base-dir, upload them, and record the outcome. The job API (JSON, for the "
        "editor page) is served beside /metrics on --metrics-port.",
        add_help=False,
        help="run the cutter service (the job API shares the metrics port)",
    )
    commands.add_db(run)
    run.add_argument("--name", required=True, help="this node's name, recorded on claimed jobs")
    run.add_argument(
        "--location",
        action="append",
        default=[],
        metavar="NAME=TYPE:ARG[,k=v...]",
        help="an upload location to serve; repeatable. local:/dir[,url_prefix=URL] or "
        "youtube:CREDS.json[,privacy=private|unlisted|public][,category=N][,chunk_size=BYTES]; both take "
        ",cut_type=fast|full",
    )
    run.add_argument(
        "--spool-dir",
        help="where cuts for remote locations (YouTube) wait while uploading; they are as "
        "big as the clip (default: the system's temp directory)",
    )
    run.add_argument(
        "--poll-interval",
        type=float,
        default=POLL_INTERVAL,
        help=f"seconds between looks for jobs when no notification comes (default: {POLL_INTERVAL})",
    )
    run.add_argument(
        "--processing-interval",
        type=float,
        default=PROCESSING_POLL_INTERVAL,
        help="seconds between checks on videos the backend is processing "
        f"(default: {PROCESSING_POLL_INTERVAL})",
    )
    run.add_argument(
        "--editor-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an origin (scheme://host[:port]) whose editor page may use the job API across "
        "origins (CORS with the session cookie); repeatable. Not needed when the page is "
        "served from the API's own origin (the node's front door)",
    )
    run.add_argument(
        "--editor-jobs-per-minute",
        type=int,
        default=DEFAULT_LIMITS[0][0],
        metavar="N",
        help=f"jobs one editor may submit in any minute (default: {DEFAULT_LIMITS[0][0]})",
    )
    run.add_argument(
        "--editor-jobs-per-day",
        type=int,
        default=DEFAULT_LIMITS[1][0],
        metavar="N",
        help="jobs one editor may submit in any 24 hours; keep editors x N within the "
        f"upload location's daily quota (default: {DEFAULT_LIMITS[1][0]})",
    )
    run.add_argument(
        "--session-hours",
        type=float,
        default=SESSION_LIFETIME.total_seconds() / 3600,
        help="how long an editor's sign-in lasts "
        f"(default: {SESSION_LIFETIME.total_seconds() / 3600:g})",
    )
    run.set_defaults(func=run_cutter)
    commands.add_commands(subparsers)
    return parser.parse_args(argv)


def run_cutter(args):
    from .api import create_app

    registry = prometheus_client.REGISTRY
    if not args.location:
        print("cutter run: give at least one --location", file=sys.stderr)
        return 2
    backends = {}
    try:
        for spec in args.location:
            backend = parse_location(spec)
            if backend.name in backends:
                raise ValueError(f"location {backend.name} is given twice")
            backends[backend.name] = backend
    except ValueError as e:
        print(f"cutter run: {e}", file=sys.stderr)
        return 2
    try:
        jobs = Jobs(Database(commands.dsn(args)))
    except ValueError as e:
        print(f"cutter run: {e}", file=sys.stderr)
        return 2
    cutter = Cutter(
        jobs,
        args.base_dir,
        args.name,
        backends,
        registry,
        poll_interval=args.poll_interval,
        spool_dir=args.spool_dir,
    )
    watcher = ProcessingWatcher(
        jobs,
        args.name,
        backends,
        interval=args.processing_interval,
        metrics=cutter.metrics,
        ready=cutter.ready,
    )
    workers = [cutter, watcher]
    if args.metrics_port:
        limits = ((args.editor_jobs_per_minute, 60), (args.editor_jobs_per_day, 24 * 3600))
        editors = Editors(jobs.db, datetime.timedelta(hours=args.session_hours))
        app = create_app(
            jobs,
            backends,
            registry,
            editor_origins=set(args.editor_origin),
            limits=limits,
            editors=editors,
        )
        workers.append(
            WSGIServer(app, args.host, args.metrics_port, name="cutter.api", stop_timeout=1)
        )
    return run_service(
        "cutter",
        workers,
        backdoor_port=args.backdoor_port,
        backdoor_socket=args.backdoor_socket,
        backdoor_locals={"cutter": cutter, "jobs": jobs, "backends": backends},
    )


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    sys.exit(args.func(args))
