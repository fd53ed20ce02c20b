"""streamvault downloader: record live HLS streams as segment files.

Reads top to bottom as manager → worker → getter:

- `ChannelManager` (one per channel) asks its provider for the media playlist
  URLs, starts a `QualityWorker` per quality, and replaces them all when one
  reports its URL expired, when the stream ends (with backoff until it comes
  back), or before the URLs' known lifetime runs out. A replacement runs
  alongside the old worker until it has read its first playlist, so nothing is
  missed in between.
- `QualityWorker` polls one media playlist about every half target duration
  and starts a `SegmentGetter` per segment never seen before (a `Timeline`
  shared by the quality's workers decides what is new and when it starts).
- `SegmentGetter` downloads one segment into the store, hashing as it writes:
  a soft timeout starts a second attempt in parallel, a hard timeout abandons
  an attempt, failures are retried with backoff until a long give-up time.

Ads are never stored; fMP4 and encrypted playlists are refused. Everything that
goes wrong is logged and counted in `downloader_errors{kind}`.
"""

import datetime
import logging
import sys
import time
import urllib.parse

import gevent
import gevent.event
import gevent.pool
import prometheus_client
import requests
import requests.adapters
import urllib3.exceptions
from prometheus_client import Counter, Gauge

from common.backoff import jitter
from common.segments import SegmentWriter, validate_name_part
from common.service import STOP_TIMEOUT, Stoppable, base_parser, run_service, setup_logging
from common.stats import timed

from . import playlist as playlists
from .providers import ChannelOffline, provider_for

logger = logging.getLogger(__name__)

# --- tunables (tests shorten them; each says what sets its value) ---------------

# Playlist URLs from Twitch expire after 24 h: replace workers well before, at 20 h.
MAX_WORKER_AGE = 20 * 3600
# An old worker keeps polling until its replacement has read one playlist, or
# this long at most (the replacement's URL may be bad too).
HANDOVER_TIMEOUT = 60
# Waits before fetching the master playlist again after the channel was offline,
# ended or failing: first and longest, in seconds. Doubled each time in between.
# 30 s at most: a charity stream that drops for a minute must be back on disk
# within seconds of its return, and one request per 30 s is nothing to an origin.
OFFLINE_BACKOFF = (1, 30)
# Poll a media playlist this often, as a fraction of its target duration. RFC 8216
# §6.3.4 has players wait half of it when nothing changed, but a recorder wants
# segments on disk soon after they are listed: at a quarter (0.5 s for 2 s
# segments) bench/downloader_load.py measured p99 lateness 0.54 s, against
# 1.56 s at a half. Unchanged playlists are not parsed again, so this is cheap.
POLL_FRACTION = 0.25
POLL_LIMITS = (0.2, 5)  # seconds: never poll faster or slower than this
# Connect and read timeouts for a media playlist request, in seconds.
PLAYLIST_TIMEOUTS = (5, 5)
# After this many playlist fetches in a row fail (5xx, timeouts, garbage), ask
# the manager for a fresh URL too; the worker keeps trying until handed over.
PLAYLIST_FAILURES_BEFORE_REFRESH = 5
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
TS_PACKET_SIZE = 188


class Metrics:
    """Every metric the downloader exports, registered on `registry`."""

    def __init__(self, registry=prometheus_client.REGISTRY):
        self.registry = registry
        self.segments = Counter(
            "downloader_segments",
            "Segments written to the store, by type (full, partial, suspect)",
            ["channel", "quality", "type"],
            registry=registry,
        )
        self.latest = Gauge(
            "downloader_latest_segment_end_timestamp_seconds",
            "Broadcast time at which the newest stored segment ends (compare with time())",
            ["channel", "quality"],
            registry=registry,
        )
        self.lateness = prometheus_client.Histogram(
            "downloader_segment_lateness_seconds",
            "From a segment's broadcast end to it being on disk",
            ["channel", "quality"],
            buckets=(0.5, 1, 2, 3, 5, 10, 20, 60, 300),
            registry=registry,
        )
        self.ads = Counter(
            "downloader_ad_segments_skipped",
            "Ad segments seen and not stored, by how they were recognised",
            ["channel", "quality", "kind"],
            registry=registry,
        )
        self.errors = Counter(
            "downloader_errors",
            "Things that went wrong, by kind",
            ["channel", "quality", "kind"],
            registry=registry,
        )
        self.estimated = Counter(
            "downloader_segments_estimated_time",
            "Segments whose start was estimated from arrival (no EXT-X-PROGRAM-DATE-TIME)",
            ["channel", "quality"],
            registry=registry,
        )
        self.attempts = Counter(
            "downloader_segment_attempts",
            "Download attempts, by why they were started (first, retry, soft_timeout)",
            ["channel", "quality", "reason"],
            registry=registry,
        )
        self.fetch_playlist = timed(
            "downloader_playlist_fetch",
            registry=registry,
            channel=lambda result, worker: worker.channel,
            quality=lambda result, worker: worker.quality,
        )(_fetch_playlist)
        self.fetch_master = timed(
            "downloader_master_fetch",
            registry=registry,
            channel=lambda result, manager: manager.channel,
            provider=lambda result, manager: manager.provider.name,
        )(_fetch_master)
        self.fetch_segment = timed(
            "downloader_segment_fetch",
            registry=registry,
            normalize=lambda result, getter, reason: result.size if result else None,
            channel=lambda result, getter, reason: getter.channel,
            quality=lambda result, getter, reason: getter.quality,
            type=lambda result, getter, reason: result.type if result else "failed",
        )(_fetch_segment)


def _fetch_master(manager):
    return manager.provider.media_playlists(manager.session)


def _fetch_playlist(worker):
    return worker.session.get(worker.url, timeout=PLAYLIST_TIMEOUTS)


def _fetch_segment(getter, reason):
    return getter.attempt(reason)


def new_session(pool_size=20):
    """A requests session whose pool holds enough connections for parallel getters."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "streamvault-downloader"
    return session


def _backoff(failures, limits):
    first, longest = limits
    return min(longest, first * 2 ** max(0, failures - 1))


# --- manager --------------------------------------------------------------------


class ChannelManager(Stoppable):
    """Keeps one worker per quality of one channel running with a fresh URL.

    How it fails: an offline channel (provider raises ChannelOffline) and any
    provider error are retried with OFFLINE_BACKOFF, forever. A worker that
    reports its URL expired triggers an immediate refresh; a stream that ended
    (EXT-X-ENDLIST) or a refused playlist triggers one after backoff.
    Qualities missing from the master playlist are warned about (once per
    change) and picked up when they appear.
    """

    def __init__(self, channel, provider, qualities, base_dir, metrics, session=None):
        super().__init__()
        self.channel = channel
        self.provider = provider
        self.qualities = list(qualities)
        self.base_dir = base_dir
        self.metrics = metrics
        self.session = session or new_session()
        self.logger = logging.getLogger(f"downloader.manager({channel})")
        self.timelines = {quality: playlists.Timeline() for quality in self.qualities}
        self.workers = {}  # quality -> current QualityWorker
        self.greenlets = gevent.pool.Group()  # workers and handovers
        self.getters = gevent.pool.Group()
        self.refresh = gevent.event.Event()
        self.refresh_delay = 0
        self._missing = set()
        self.failures = 0  # master fetches in a row that led to nothing new
        self.latest = {}  # quality -> newest stored segment end, as a timestamp

    def request_refresh(self, worker, delay=0):
        """`worker` asks for a new master playlist fetch (after `delay` seconds).

        Only current workers are heard: one already replaced has nothing to say.
        """
        if self.workers.get(worker.quality) is not worker:
            return
        self.refresh_delay = max(self.refresh_delay, delay)
        self.refresh.set()

    def note_progress(self):
        """A worker found new segments: the channel is live, so reset the backoff."""
        self.failures = 0

    def run(self):
        self.failures = 0
        try:
            while not self.stopping.is_set():
                self.refresh.clear()
                self.refresh_delay = 0
                try:
                    urls = self.metrics.fetch_master(self)
                except ChannelOffline as e:
                    self.failures += 1
                    # Once at INFO, then quietly: a channel may be offline for days.
                    log = self.logger.info if self.failures == 1 else self.logger.debug
                    log("Offline: %s; retrying", e)
                    self._wait(_backoff(self.failures, OFFLINE_BACKOFF))
                    continue
                except Exception as e:
                    self.failures += 1
                    self.metrics.errors.labels(self.channel, "", "master_playlist").inc()
                    self.logger.warning(
                        "Could not get playlists (%s: %s); retrying", type(e).__name__, e
                    )
                    self._wait(_backoff(self.failures, OFFLINE_BACKOFF))
                    continue
                started = self._start_workers(urls)
                if not started:
                    self.failures += 1
                    self._wait(_backoff(self.failures, OFFLINE_BACKOFF))
                    continue
                gevent.wait([self.stopping, self.refresh], timeout=jitter(MAX_WORKER_AGE), count=1)
                if self.refresh.is_set() and self.refresh_delay:
                    self.failures += 1
                    self._wait(max(self.refresh_delay, _backoff(self.failures, OFFLINE_BACKOFF)))
        finally:
            self._stop_everything()

    def _wait(self, seconds):
        self.stopping.wait(jitter(seconds))

    def _start_workers(self, urls):
        missing = set(self.qualities) - set(urls)
        if missing != self._missing:
            if missing:
                self.logger.warning(
                    "Qualities %s not offered (offered: %s)",
                    ", ".join(sorted(missing)),
                    ", ".join(sorted(urls)) or "none",
                )
            self._missing = missing
        for quality in missing:
            self.metrics.errors.labels(self.channel, quality, "quality_missing").inc()
        started = 0
        for quality in self.qualities:
            if quality in urls:
                self._start_worker(quality, urls[quality])
                started += 1
        return started

    def _start_worker(self, quality, url):
        old = self.workers.get(quality)
        # Without the query string: Twitch's carries the access token.
        shown = urllib.parse.urlsplit(url)._replace(query="").geturl()
        self.logger.info("%s %s from %s", "Replacing" if old else "Recording", quality, shown)
        worker = QualityWorker(self, quality, url, self.timelines[quality])
        self.workers[quality] = worker
        self.greenlets.spawn(worker.run)
        if old is not None:
            self.greenlets.spawn(self._handover, old, worker)

    def _handover(self, old, new):
        """Stop `old` once `new` has read a playlist (or it gave up trying)."""
        gevent.wait([new.ready, new.done, self.stopping], timeout=HANDOVER_TIMEOUT, count=1)
        self.logger.debug("Handing %s over from %r to %r", old.quality, old, new)
        old.stop()

    def _stop_everything(self):
        """Stop workers, then getters; kill what does not stop (temp files are removed)."""
        for worker in self.workers.values():
            worker.stop()
        for getter in self._getter_objects():
            getter.stop()
        self.greenlets.join(timeout=1)
        self.greenlets.kill(timeout=1)
        self.getters.join(timeout=max(1, STOP_TIMEOUT - 2))
        self.getters.kill(timeout=1)

    def _getter_objects(self):
        return [g.getter for g in self.getters if hasattr(g, "getter")]

    def note_written(self, quality, end):
        """Record that a segment ending at `end` is on disk (for the freshness gauge)."""
        end = end.timestamp()
        if end > self.latest.get(quality, 0):
            self.latest[quality] = end
            self.metrics.latest.labels(self.channel, quality).set(end)

    def spawn_getter(self, getter):
        greenlet = gevent.Greenlet(getter.run)
        greenlet.getter = getter
        self.getters.start(greenlet)
        return greenlet


# --- worker ---------------------------------------------------------------------


class URLExpired(Exception):
    """403/404/410 on a media playlist: its URL expired or the stream went away."""


class QualityWorker(Stoppable):
    """Polls one media playlist URL and starts a getter per new segment.

    How it fails: 403/404/410 means the URL expired (Twitch's do) or the stream
    is gone: ask the manager for fresh URLs and end. EXT-X-ENDLIST: the stream
    ended; ask for a refresh after backoff and end. fMP4/encrypted playlists:
    refused with an error, retried slowly. Anything else (5xx, timeouts,
    garbage) is retried, backing off from the poll interval; after several failures in a row
    the manager is asked for fresh URLs too, and this worker keeps trying
    until it is replaced.
    """

    def __init__(self, manager, quality, url, timeline):
        super().__init__()
        self.manager = manager
        self.channel = manager.channel
        self.quality = quality
        self.url = url
        self.timeline = timeline
        self.session = manager.session
        self.metrics = manager.metrics
        self.ready = gevent.event.Event()  # set once a playlist was read
        self.done = gevent.event.Event()  # set when run() ends
        self.logger = logging.getLogger(f"downloader.worker({self.channel}/{quality})")
        self._warned_no_pdt = False
        self._last_text = None
        self._last_playlist = None

    def __repr__(self):
        return f"<worker {self.channel}/{self.quality} {id(self):x}>"

    def run(self):
        try:
            self._run()
        except Exception:
            self.logger.exception("Worker failed unexpectedly; asking for a restart")
            self.metrics.errors.labels(self.channel, self.quality, "worker_crash").inc()
            self.manager.request_refresh(self, delay=OFFLINE_BACKOFF[0])
        finally:
            self.done.set()

    def _run(self):
        failures = 0
        interval = POLL_LIMITS[0]
        while not self.stopping.is_set():
            try:
                playlist = self.fetch()
            except URLExpired as e:
                self.logger.info("Playlist URL expired (%s); asking for a new one", e)
                self.metrics.errors.labels(self.channel, self.quality, "playlist_expired").inc()
                # A URL that never worked is a failure to back off from, not an expiry.
                delay = 0 if self.ready.is_set() else OFFLINE_BACKOFF[0]
                self.manager.request_refresh(self, delay=delay)
                return
            except playlists.UnsupportedPlaylist as e:
                self.logger.error("Refusing to record: %s", e)
                self.metrics.errors.labels(self.channel, self.quality, e.kind).inc()
                self.manager.request_refresh(self, delay=OFFLINE_BACKOFF[1])
                return
            except Exception as e:
                failures += 1
                kind = getattr(e, "kind", "playlist_fetch")
                self.metrics.errors.labels(self.channel, self.quality, kind).inc()
                self.logger.warning("Playlist fetch failed (%s: %s)", type(e).__name__, e)
                if failures == PLAYLIST_FAILURES_BEFORE_REFRESH:
                    self.logger.warning(
                        "%d playlist failures in a row; asking for new URLs", failures
                    )
                    self.manager.request_refresh(self)
                # Back off from a failing origin: double the wait, up to the longest poll.
                self.stopping.wait(jitter(min(POLL_LIMITS[1], interval * 2 ** (failures - 1))))
                continue
            failures = 0
            self.ready.set()
            self.handle(playlist)
            if playlist.ended:
                self.logger.info("Stream ended (EXT-X-ENDLIST)")
                self.manager.request_refresh(self, delay=OFFLINE_BACKOFF[0])
                return
            interval = min(
                POLL_LIMITS[1], max(POLL_LIMITS[0], playlist.target_duration * POLL_FRACTION)
            )
            self.stopping.wait(jitter(interval))

    def fetch(self):
        """One poll: fetch and parse the media playlist. A seam for tests."""
        response = self.metrics.fetch_playlist(self)
        if response.status_code in (403, 404, 410):
            raise URLExpired(f"HTTP {response.status_code}")
        response.raise_for_status()
        text = response.text
        if text != self._last_text:  # most polls find it unchanged: skip parsing
            self._last_playlist = playlists.parse_media_playlist(text, response.url)
            self._last_text = text
        return self._last_playlist

    def handle(self, playlist):
        """Start a getter for every segment not seen before; count ads."""
        now = datetime.datetime.now(datetime.UTC)
        new = self.timeline.place(playlist, now)
        if not playlist.has_pdt and playlist.segments and not self._warned_no_pdt:
            self.logger.warning(
                "Playlist has no EXT-X-PROGRAM-DATE-TIME: segment times are estimated from arrival"
            )
            self._warned_no_pdt = True
        if new:
            self.manager.note_progress()
        for placed in new:
            segment = placed.segment
            if segment.ad:
                self.metrics.ads.labels(self.channel, self.quality, segment.ad).inc()
                self.logger.debug("Skipping ad segment %s (%s)", segment.uri, segment.ad)
                continue
            if placed.estimated:
                self.metrics.estimated.labels(self.channel, self.quality).inc()
            self.manager.spawn_getter(SegmentGetter(self, placed))
        return new


# --- getter ---------------------------------------------------------------------


class AttemptFailed(Exception):
    """An attempt got nothing worth keeping. `kind` labels the error metric."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class HardTimeout(Exception):
    pass


class Outcome:
    """What an attempt produced: an unfinished writer and the type it deserves."""

    RANK = {"full": 3, "suspect": 2, "partial": 1}

    def __init__(self, type, writer, reason=""):
        self.type = type
        self.writer = writer
        self.reason = reason

    @property
    def size(self):
        return self.writer.size

    def better_than(self, other):
        return other is None or (self.RANK[self.type], self.size) > (
            self.RANK[other.type],
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
        # Not a logger per segment: the logging module keeps every logger forever.
        self.logger = _SegmentLogger(
            logging.getLogger(f"downloader.getter({self.channel}/{self.quality})"),
            {"segment": f"{placed.start:%Y-%m-%dT%H:%M:%S.%f}"[:-3]},
        )
        self.path = None  # set when a file was written

    def run(self):
        try:
            self._run()
        except Exception:
            self.metrics.errors.labels(self.channel, self.quality, "getter_crash").inc()
            self.logger.exception("Getter failed unexpectedly")

    def _run(self):
        deadline = time.monotonic() + GIVE_UP_TIMEOUT
        running = []  # (greenlet, started at)
        best = None  # best unfinished Outcome so far
        failures = 0
        next_retry = time.monotonic()
        try:
            while True:
                for greenlet, _ in [r for r in running if r[0].ready()]:
                    running.remove((greenlet, _))
                    if greenlet.successful():
                        outcome = greenlet.value
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
                        error = greenlet.exception
                        kind = getattr(error, "kind", type(error).__name__)
                        self.metrics.errors.labels(self.channel, self.quality, kind).inc()
                        self.logger.warning("Attempt failed: %s", error)
                    failures += 1
                    next_retry = time.monotonic() + jitter(_backoff(failures, SEGMENT_RETRY))
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
        running.append((gevent.spawn(self.metrics.fetch_segment, self, reason), time.monotonic()))

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
        """One download attempt → Outcome, or AttemptFailed. Runs in its own greenlet."""
        writer = None
        try:
            with gevent.Timeout(SEGMENT_TIMEOUTS[1], HardTimeout):
                response = self.session.get(self.uri, stream=True, timeout=SEGMENT_REQUEST_TIMEOUTS)
                try:
                    if response.status_code != 200:
                        kind = (
                            "segment_gone"
                            if response.status_code in (403, 404, 410)
                            else "segment_http"
                        )
                        raise AttemptFailed(kind, f"HTTP {response.status_code} for {self.uri}")
                    length = response.headers.get("Content-Length")
                    writer = SegmentWriter(
                        self.base_dir,
                        self.channel,
                        self.quality,
                        self.placed.start,
                        self.placed.duration,
                    )
                    longest_gap = 0
                    last = time.monotonic()
                    # read1: every byte that arrived is written before an error
                    # surfaces (iter_content loses the chunk in progress).
                    while chunk := response.raw.read1(CHUNK_SIZE):
                        now = time.monotonic()
                        longest_gap = max(longest_gap, now - last)
                        last = now
                        writer.write(chunk)
                    longest_gap = max(longest_gap, time.monotonic() - last)
                finally:
                    response.close()
        except (HardTimeout, requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            broke = "hard timeout" if isinstance(e, HardTimeout) else f"{type(e).__name__}: {e}"
            if writer is not None and writer.size > 0:
                return Outcome("partial", writer, f"body broke after {writer.size} bytes ({broke})")
            if writer is not None:
                writer.abort()
            raise AttemptFailed(
                "segment_timeout" if isinstance(e, HardTimeout) else "segment_connection", broke
            ) from None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer.size == 0:
            return Outcome("suspect", writer, "empty body")
        if length is not None and length.isdigit() and int(length) != writer.size:
            return Outcome("partial", writer, f"{writer.size} of {length} bytes")
        if writer.size % TS_PACKET_SIZE:
            return Outcome("suspect", writer, f"{writer.size} bytes: not whole MPEG-TS packets")
        if length is None and longest_gap >= STALL_SUSPECT_TIME:
            return Outcome(
                "suspect", writer, f"stalled {longest_gap:.1f}s, then ended without a length"
            )
        return Outcome("full", writer)


# --- command line ---------------------------------------------------------------


def parse_args(argv=None):
    parser = base_parser("downloader", __doc__.splitlines()[0], metrics_port=8001)
    parser.add_argument(
        "channels",
        nargs="+",
        metavar="CHANNEL",
        help="NAME (a Twitch channel) or NAME=URL (any HLS master or media playlist)",
    )
    parser.add_argument(
        "--qualities",
        default="source",
        help="comma-separated qualities to record (default: source)",
    )
    parser.add_argument(
        "--twitch-client-id",
        default=None,
        help="Client-ID for Twitch's GQL API (default: the web player's)",
    )
    parser.add_argument("--twitch-gql-url", default=None, help="Twitch GQL endpoint (for testing)")
    parser.add_argument(
        "--twitch-usher-url",
        default=None,
        help="Twitch usher URL with {channel} (for testing)",
    )
    args = parser.parse_args(argv)
    try:
        args.qualities = [
            validate_name_part(q.strip(), "quality") for q in args.qualities.split(",") if q.strip()
        ]
        if not args.qualities:
            raise ValueError("no qualities given")
        twitch = {
            key: value
            for key, value in (
                ("client_id", args.twitch_client_id),
                ("gql_url", args.twitch_gql_url),
                ("usher_url", args.twitch_usher_url),
            )
            if value
        }
        args.providers = [provider_for(spec, **twitch) for spec in args.channels]
    except ValueError as e:
        parser.error(str(e))
    names = [name for name, _ in args.providers]
    if len(set(names)) != len(names):
        parser.error("a channel is given twice")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    metrics = Metrics()
    managers = [
        ChannelManager(name, provider, args.qualities, args.base_dir, metrics)
        for name, provider in args.providers
    ]
    sys.exit(
        run_service(
            "downloader",
            managers,
            metrics_port=args.metrics_port,
            host=args.host,
            backdoor_port=args.backdoor_port,
            backdoor_socket=args.backdoor_socket,
            backdoor_locals={"managers": managers, "metrics": metrics},
        )
    )
