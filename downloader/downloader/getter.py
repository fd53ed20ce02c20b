"""Getting one segment into the store, and the fMP4 init sections it needs.

- `SegmentGetter` downloads one segment, hashing as it writes: a soft timeout
  starts a second attempt in parallel, a hard timeout abandons an attempt,
  failures are retried with backoff until a long give-up time.
- `InitSections` fetches each fMP4 media initialization section (EXT-X-MAP)
  once per channel, with the same timeouts and retries, and keeps the few in
  use: a stored fMP4 segment is its init section followed by its own bytes.
"""

import collections
import contextlib
import datetime
import logging
import time

import gevent
import gevent.event
import requests
import urllib3.exceptions

from common.backoff import backoff_delay, jitter
from common.mpegts import PACKET_SIZE
from common.segments import TYPE_RANK, SegmentWriter
from common.service import Stoppable

# --- tunables (tests shorten them; each says what sets its value) ---------------

# Soft and hard timeouts for one download attempt of a segment, in seconds. A 2 s
# segment normally arrives in well under a second; at 5 s an attempt is stuck
# behind a slow CDN node and a parallel one usually wins. At 60 s it is dead.
SEGMENT_TIMEOUTS = (5, 60)
# Connect and read (between bytes) timeouts of a segment request, in seconds.
SEGMENT_REQUEST_TIMEOUTS = (5, 30)
# At most this many attempts of one segment run at once.
MAX_PARALLEL_ATTEMPTS = 2
# Waits between failed attempts: first and longest, in seconds, doubling.
SEGMENT_RETRY = (0.5, 15)
# Give up on a segment this long after first seeing it: CDNs drop live segments
# minutes after they leave the playlist, and by then the backfiller can fetch it
# from a peer. What did arrive is kept as `partial`/`suspect`.
GIVE_UP_TIMEOUT = 5 * 60
# A body that went quiet for this long and then ended without a Content-Length is
# `suspect`: observed on Twitch, whose CDN closes a stalled transfer cleanly,
# leaving a truncated segment that looks complete.
STALL_SUSPECT_TIME = 5
CHUNK_SIZE = 64 * 1024
# Init sections kept per channel. One per quality in use, and a stream changes
# it only when the encoder restarts; a few spare cover the overlap.
INIT_SECTIONS_KEPT = 16
# The largest init section accepted, in bytes: real ones are a few KB (codec
# parameters and track headers); a huge one is an error page or a media file.
MAX_INIT_SECTION = 1024 * 1024


class AttemptFailed(Exception):
    """An attempt got nothing worth keeping. `kind` labels the error metric."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class HardTimeout(Exception):
    pass


class InitUnavailable(Exception):
    """An init section could not be fetched before the give-up time."""

    kind = "init_section"


def _read_range(response, byterange, chunk_size, on_chunk):
    """Feed the body's bytes (only `byterange`'s, if given) to `on_chunk`.

    A 206 answer is the range itself; a 200 answer to a range request is the
    whole resource (an origin that ignores Range), so the range is cut out of it.
    Returns the longest gap between chunks, in seconds.
    """
    skip = byterange.offset if byterange is not None and response.status_code == 200 else 0
    left = byterange.length if byterange is not None else None
    longest_gap = 0
    last = time.monotonic()
    # read1: every byte that arrived is passed on before an error surfaces
    # (iter_content loses the chunk in progress).
    while (left is None or left > 0) and (chunk := response.raw.read1(chunk_size)):
        now = time.monotonic()
        longest_gap = max(longest_gap, now - last)
        last = now
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip = chunk[cut:], skip - cut
        if left is not None:
            chunk, left = chunk[:left], left - min(left, len(chunk))
        if chunk:
            on_chunk(chunk)
    return max(longest_gap, time.monotonic() - last)


# What a broken transfer raises; anything else is a bug and propagates.
TRANSFER_ERRORS = (HardTimeout, requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def _describe(error):
    return "hard timeout" if isinstance(error, HardTimeout) else f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def _request(session, uri, byterange):
    """GET `uri` (only `byterange` of it, if given) under the hard timeout, the
    body left to read → (response, expected length or None).

    A status other than 200/206 is AttemptFailed; the block's reading is under
    the same hard timeout (HardTimeout), and the response is closed after it.
    """
    headers = {"Range": byterange.header} if byterange is not None else None
    with gevent.Timeout(SEGMENT_TIMEOUTS[1], HardTimeout):
        response = session.get(uri, stream=True, timeout=SEGMENT_REQUEST_TIMEOUTS, headers=headers)
        try:
            _check_status(response, uri)
            yield response, _expected_length(response, byterange)
        finally:
            response.close()


def _expected_length(response, byterange):
    """How many bytes the answer should give us, if known."""
    if byterange is not None:
        return byterange.length
    length = response.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _check_status(response, uri):
    if response.status_code not in (200, 206):
        gone = response.status_code in (403, 404, 410)
        raise AttemptFailed(
            "segment_gone" if gone else "segment_http", f"HTTP {response.status_code} for {uri}"
        )


def _spawn_attempt(fn, *args):
    """Run an attempt in a greenlet whose value is (result, None) or (None, AttemptFailed).

    An expected failure is a value, not an exception: gevent prints a traceback
    for every greenlet that dies of one, which for a flaky origin would be one
    per retry. Any other exception (a bug) still kills the greenlet loudly.
    """

    def run():
        try:
            return fn(*args), None
        except AttemptFailed as e:
            return None, e

    return gevent.spawn(run)


def _attempt_result(greenlet):
    """A finished `_spawn_attempt` greenlet → (result, None) or (None, exception)."""
    return greenlet.value if greenlet.successful() else (None, greenlet.exception)


class InitSections:
    """fMP4 init sections (EXT-X-MAP) of one channel, fetched once each.

    `get(section, deadline, stopping)` returns the section's bytes, fetching
    them if needed; getters of segments after the same EXT-X-MAP wait for the
    one fetch. A fetch makes attempts like a segment's: a second in parallel
    after the soft timeout, each abandoned at the hard timeout, retried with
    SEGMENT_RETRY backoff, until `deadline` (a monotonic time): then
    InitUnavailable, and the next segment that needs it tries again. Only a
    complete body is accepted (its Content-Length or byte range, never empty,
    at most MAX_INIT_SECTION). The INIT_SECTIONS_KEPT most recent are kept.
    """

    def __init__(self, session, logger, on_error):
        self.session = session
        self.logger = logger
        self.on_error = on_error  # (kind) -> None: counts a failed attempt
        self._kept = collections.OrderedDict()  # InitSection -> bytes
        self._fetching = {}  # InitSection -> AsyncResult

    def forget(self, section=None):
        """Drop `section` (or every section) from the kept ones: fetch it again next time.

        For when the same URI may now hold other bytes: an encoder that restarted
        rewrites its `init.mp4` in place (a new worker, or an EXT-X-DISCONTINUITY).
        A fetch already under way is not affected.
        """
        if section is None:
            self._kept.clear()
        else:
            self._kept.pop(section, None)

    def get(self, section, deadline, stopping):
        if section in self._kept:
            self._kept.move_to_end(section)
            return self._kept[section]
        pending = self._fetching.get(section)
        if pending is None:
            pending = gevent.event.AsyncResult()
            self._fetching[section] = pending
            gevent.spawn(self._fetch, section, deadline, stopping, pending)
        return pending.get()

    def _fetch(self, section, deadline, stopping, pending):
        try:
            data = self._race(section, deadline, stopping)
        except BaseException as e:
            pending.set_exception(e if isinstance(e, Exception) else InitUnavailable(str(e)))
            return
        finally:
            self._fetching.pop(section, None)
        self._kept[section] = data
        while len(self._kept) > INIT_SECTIONS_KEPT:
            self._kept.popitem(last=False)
        pending.set(data)

    def _race(self, section, deadline, stopping):
        running = []  # (greenlet, started at)
        failures = 0
        next_retry = time.monotonic()
        try:
            while True:
                for entry in [r for r in running if r[0].ready()]:
                    running.remove(entry)
                    data, error = _attempt_result(entry[0])
                    if error is None:
                        return data
                    self.on_error(getattr(error, "kind", type(error).__name__))
                    self.logger.warning("Init section %s: attempt failed: %s", section.uri, error)
                    failures += 1
                    next_retry = time.monotonic() + jitter(backoff_delay(failures, SEGMENT_RETRY))
                now = time.monotonic()
                if stopping.is_set() or now >= deadline:
                    raise InitUnavailable(f"init section {section.uri} not fetched")
                wake = [deadline]
                if not running:
                    if now >= next_retry:
                        running.append((_spawn_attempt(self._attempt, section), now))
                        continue
                    wake.append(next_retry)
                elif len(running) < MAX_PARALLEL_ATTEMPTS:
                    newest = max(started for _, started in running)
                    if now - newest >= SEGMENT_TIMEOUTS[0]:
                        running.append((_spawn_attempt(self._attempt, section), now))
                        continue
                    wake.append(newest + SEGMENT_TIMEOUTS[0])
                gevent.wait(
                    [stopping] + [g for g, _ in running], timeout=max(0, min(wake) - now), count=1
                )
        finally:
            for greenlet, _ in running:
                greenlet.kill(block=True)

    def _attempt(self, section):
        parts = []
        size = 0

        def keep(chunk):
            nonlocal size
            size += len(chunk)
            if size > MAX_INIT_SECTION:
                raise AttemptFailed("init_section", f"init section over {MAX_INIT_SECTION} bytes")
            parts.append(chunk)

        try:
            with _request(self.session, section.uri, section.byterange) as (response, expected):
                _read_range(response, section.byterange, CHUNK_SIZE, keep)
        except TRANSFER_ERRORS as e:
            raise AttemptFailed("init_section", _describe(e)) from None
        if size == 0 or (expected is not None and size != expected):
            raise AttemptFailed("init_section", f"{size} of {expected or '?'} bytes")
        return b"".join(parts)


class Outcome:
    """What an attempt produced: an unfinished writer and the type it deserves."""

    def __init__(self, type, writer, reason=""):
        self.type = type
        self.writer = writer
        self.reason = reason

    @property
    def size(self):
        return self.writer.size

    def better_than(self, other):
        return other is None or (TYPE_RANK[self.type], self.size) > (
            TYPE_RANK[other.type],
            other.size,
        )


class _SegmentLogger(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"segment {self.extra['segment']}: {msg}", kwargs


class SegmentGetter(Stoppable):
    """Downloads one segment into the store.

    Attempts: the first starts at once; if it is still running after the soft
    timeout a second starts in parallel; an attempt running past the hard
    timeout is abandoned; a failed attempt is retried after SEGMENT_RETRY
    backoff. The first `full` download wins and the others are cancelled.

    What each attempt yields: a complete body is `full`, unless it is empty or
    not whole MPEG-TS packets, or it stalled for STALL_SUSPECT_TIME and ended
    without a Content-Length (an origin that truncated it): `suspect`. A body
    that broke (reset, short of its Content-Length, hard timeout) keeps what
    arrived as a `partial` candidate. Candidates are kept (as temp files)
    while trying for better; on giving up, or on stop, the best one is
    written. Nothing else is ever left behind: every writer ends finished or
    aborted.
    """

    def __init__(self, worker, placed):
        super().__init__()
        self.manager = worker.manager
        self.channel = worker.channel
        self.quality = worker.quality
        self.base_dir = worker.manager.base_dir
        self.session = worker.session
        self.metrics = worker.metrics
        self.placed = placed
        self.uri = placed.segment.uri
        self.byterange = placed.segment.byterange
        self.init = placed.segment.init  # InitSection for fMP4, else None
        self.init_sections = worker.manager.init_sections[worker.quality]
        self._init_data = b""
        # Not a logger per segment: the logging module keeps every logger forever.
        self.logger = _SegmentLogger(
            logging.getLogger(f"downloader.getter({self.channel}/{self.quality})"),
            {"segment": f"{placed.start:%Y-%m-%dT%H:%M:%S.%f}"[:-3]},
        )
        self.path = None  # set when a file was written
        self.timed_attempt = self.metrics.timed(
            "downloader_segment_fetch",
            self.attempt,
            normalize=lambda result, reason: result.size if result else None,
            channel=self.channel,
            quality=self.quality,
            type=lambda result, reason: result.type if result else "failed",
        )

    def run(self):
        try:
            self._run()
        except Exception:
            self.metrics.errors.labels(self.channel, self.quality, "getter_crash").inc()
            self.logger.exception("Getter failed unexpectedly")

    def _run(self):
        deadline = time.monotonic() + GIVE_UP_TIMEOUT
        if self.init is not None:
            # Without its init section an fMP4 segment decodes as nothing: store
            # none of it rather than a file that cannot play (the backfiller may
            # find a whole one on a peer).
            try:
                self._init_data = self.init_sections.get(self.init, deadline, self.stopping)
            except InitUnavailable as e:
                if not self.stopping.is_set():
                    self.metrics.errors.labels(self.channel, self.quality, e.kind).inc()
                    self.logger.error("Not stored: %s", e)
                return
        running = []  # (greenlet, started at)
        best = None  # best unfinished Outcome so far
        failures = 0
        next_retry = time.monotonic()
        try:
            while True:
                for greenlet, _ in [r for r in running if r[0].ready()]:
                    running.remove((greenlet, _))
                    outcome, error = _attempt_result(greenlet)
                    if error is None:
                        if outcome.type == "full":
                            self._finish(outcome)
                            return
                        self.logger.warning("Attempt gave %s: %s", outcome.type, outcome.reason)
                        self.metrics.errors.labels(self.channel, self.quality, outcome.type).inc()
                        if outcome.better_than(best):
                            if best is not None:
                                best.writer.abort()
                            best = outcome
                        else:
                            outcome.writer.abort()
                    else:
                        kind = getattr(error, "kind", type(error).__name__)
                        self.metrics.errors.labels(self.channel, self.quality, kind).inc()
                        self.logger.warning("Attempt failed: %s", error)
                    failures += 1
                    next_retry = time.monotonic() + jitter(backoff_delay(failures, SEGMENT_RETRY))
                now = time.monotonic()
                if self.stopping.is_set():
                    return
                if now >= deadline:
                    self.logger.error("Giving up after %ss", GIVE_UP_TIMEOUT)
                    self.metrics.errors.labels(self.channel, self.quality, "gave_up").inc()
                    return
                wake = [deadline]
                if not running:
                    if now >= next_retry:
                        self._start_attempt(running, "first" if failures == 0 else "retry")
                        continue
                    wake.append(next_retry)
                elif len(running) < MAX_PARALLEL_ATTEMPTS:
                    newest = max(started for _, started in running)
                    if now - newest >= SEGMENT_TIMEOUTS[0]:
                        self.logger.info("Soft timeout: starting a parallel attempt")
                        self._start_attempt(running, "soft_timeout")
                        continue
                    wake.append(newest + SEGMENT_TIMEOUTS[0])
                timeout = max(0, min(wake) - now)
                gevent.wait([self.stopping] + [g for g, _ in running], timeout=timeout, count=1)
        finally:
            for greenlet, _ in running:
                greenlet.kill(block=True)
            if best is not None:
                if self.path is None:
                    self._finish(best)  # nothing better arrived: keep what did
                else:
                    best.writer.abort()

    def _start_attempt(self, running, reason):
        self.metrics.attempts.labels(self.channel, self.quality, reason).inc()
        running.append((_spawn_attempt(self.timed_attempt, reason), time.monotonic()))

    def _finish(self, outcome):
        self.path = outcome.writer.finish(outcome.type)
        placed = self.placed
        self.metrics.segments.labels(self.channel, self.quality, outcome.type).inc()
        now = datetime.datetime.now(datetime.UTC)
        self.metrics.lateness.labels(self.channel, self.quality).observe(
            max(0, (now - placed.end).total_seconds())
        )
        self.manager.note_written(self.quality, placed.end)
        self.logger.debug("Wrote %s", self.path)

    def attempt(self, reason):
        """One download attempt → Outcome, or AttemptFailed. Runs in its own greenlet.

        An fMP4 segment's file starts with its init section, fetched before;
        the checks below are on the media bytes alone.
        """
        writer = None
        container = self.placed.segment.container
        try:
            with _request(self.session, self.uri, self.byterange) as (response, expected):
                writer = SegmentWriter(
                    self.base_dir,
                    self.channel,
                    self.quality,
                    self.placed.start,
                    self.placed.duration,
                    container,
                )
                writer.write(self._init_data)
                longest_gap = _read_range(response, self.byterange, CHUNK_SIZE, writer.write)
        except TRANSFER_ERRORS as e:
            broke = _describe(e)
            media = writer.size - len(self._init_data) if writer is not None else 0
            if media > 0:
                return Outcome("partial", writer, f"body broke after {media} bytes ({broke})")
            if writer is not None:
                writer.abort()
            raise AttemptFailed(
                "segment_timeout" if isinstance(e, HardTimeout) else "segment_connection", broke
            ) from None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        media = writer.size - len(self._init_data)
        if media == 0:
            return Outcome("suspect", writer, "empty body")
        if expected is not None and expected != media:
            return Outcome("partial", writer, f"{media} of {expected} bytes")
        if container == "ts" and media % PACKET_SIZE:
            return Outcome("suspect", writer, f"{media} bytes: not whole MPEG-TS packets")
        length_known = self.byterange is not None or expected is not None
        if not length_known and longest_gap >= STALL_SUSPECT_TIME:
            return Outcome(
                "suspect", writer, f"stalled {longest_gap:.1f}s, then ended without a length"
            )
        return Outcome("full", writer)
