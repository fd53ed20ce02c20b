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
- `SegmentGetter` (getter.py) downloads one segment into the store.

MPEG-TS segments are stored as received, fMP4 ones behind their init section
(`getter.py`). Ads are never stored; encrypted playlists are refused. Everything that
goes wrong is logged and counted in `downloader_errors{kind}`.
"""

import datetime
import functools
import logging
import sys
import urllib.parse

import gevent
import gevent.event
import gevent.pool
import prometheus_client
import requests
import requests.adapters
from prometheus_client import Counter, Gauge

from common.backoff import backoff_delay, jitter, sleep
from common.segments import validate_name_part
from common.service import STOP_TIMEOUT, Stoppable, base_parser, run_service, setup_logging
from common.stats import timed

from . import playlist as playlists
from .getter import InitSections, SegmentGetter
from .providers import TWITCH_CODECS, ChannelOffline, parse_supported_codecs, provider_for

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
        self.codec = Gauge(
            "downloader_quality_codec_info",
            "1 for the video codec family (h264, h265, av1, audio, unknown) each quality"
            " is offered in, from the master playlist's CODECS",
            ["channel", "quality", "codec"],
            registry=registry,
        )
        self.attempts = Counter(
            "downloader_segment_attempts",
            "Download attempts, by why they were started (first, retry, soft_timeout)",
            ["channel", "quality", "reason"],
            registry=registry,
        )
        self._timers = {}

    def timed(self, name, fn, *, normalize=None, **labels):
        """`fn` timed by `common.stats.timed` as `name`, for one of many callers of a registry.

        `timed` registers its histograms when it wraps a function, so wrapping each
        worker's own method would register them again for every worker. The wrapper
        is made once per name here, and each caller binds its function and labels
        where it makes the call: `self.fetch = metrics.timed("x", self._fetch,
        channel=...)`. Label values are constants, or functions of `(result, *args)`
        as with `timed`; every caller of one name must give the same label names.
        """
        wrapper = self._timers.get(name)
        if wrapper is None:
            wrapper = timed(
                name,
                registry=self.registry,
                normalize=_bound_normalize,
                **{key: _bound_label(key) for key in labels},
            )(_call_bound)
            self._timers[name] = wrapper
        return functools.partial(wrapper, _Bound(fn, labels, normalize))


class _Bound:
    """One caller's function, labels and normalisation, for `Metrics.timed`."""

    def __init__(self, fn, labels, normalize):
        self.fn = fn
        self.labels = labels
        self.normalize = normalize


def _call_bound(bound, *args, **kwargs):
    return bound.fn(*args, **kwargs)


def _bound_label(key):
    def label(result, bound, *args, **kwargs):
        value = bound.labels[key]
        return value(result, *args, **kwargs) if callable(value) else value

    return label


def _bound_normalize(result, bound, *args, **kwargs):
    return bound.normalize(result, *args, **kwargs) if bound.normalize else None


def new_session(pool_size=20):
    """A requests session whose pool holds enough connections for parallel getters."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "streamvault-downloader"
    return session


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
        self.init_sections = {
            quality: InitSections(
                self.session,
                self.logger,
                lambda kind, quality=quality: metrics.errors.labels(channel, quality, kind).inc(),
            )
            for quality in self.qualities
        }
        self.codecs = {}  # quality -> codec family last offered (the info metric's label)
        self.workers = {}  # quality -> current QualityWorker
        self.greenlets = gevent.pool.Group()  # workers and handovers
        self.getters = gevent.pool.Group()
        self.refresh = gevent.event.Event()
        self.refresh_delay = 0
        self._missing = set()
        self.failures = 0  # master fetches in a row that led to nothing new
        self.latest = {}  # quality -> newest stored segment end, as a timestamp
        self.fetch_master = metrics.timed(
            "downloader_master_fetch",
            lambda: provider.media_playlists(self.session),
            channel=channel,
            provider=provider.name,
        )

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
                    urls = self.fetch_master()
                except ChannelOffline as e:
                    self.failures += 1
                    # Once at INFO, then quietly: a channel may be offline for days.
                    log = self.logger.info if self.failures == 1 else self.logger.debug
                    log("Offline: %s; retrying", e)
                    self._wait(backoff_delay(self.failures, OFFLINE_BACKOFF))
                    continue
                except Exception as e:
                    self.failures += 1
                    self.metrics.errors.labels(self.channel, "", "master_playlist").inc()
                    self.logger.warning(
                        "Could not get playlists (%s: %s); retrying", type(e).__name__, e
                    )
                    self._wait(backoff_delay(self.failures, OFFLINE_BACKOFF))
                    continue
                started = self._start_workers(urls)
                if not started:
                    self.failures += 1
                    self._wait(backoff_delay(self.failures, OFFLINE_BACKOFF))
                    continue
                gevent.wait([self.stopping, self.refresh], timeout=jitter(MAX_WORKER_AGE), count=1)
                if self.refresh.is_set() and self.refresh_delay:
                    self.failures += 1
                    self._wait(
                        max(self.refresh_delay, backoff_delay(self.failures, OFFLINE_BACKOFF))
                    )
        finally:
            self._stop_everything()

    def _wait(self, seconds):
        sleep(self.stopping, seconds)

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
        offered = getattr(self.provider, "codecs", {})
        for quality in self.qualities:
            if quality in urls:
                self._note_codec(quality, offered.get(quality, "unknown"))
                self._start_worker(quality, urls[quality])
                started += 1
        return started

    def _note_codec(self, quality, codec):
        old = self.codecs.get(quality)
        if old == codec:
            return
        if old is not None:
            self.metrics.codec.remove(self.channel, quality, old)
            self.logger.info("%s is now %s (was %s)", quality, codec, old)
        self.codecs[quality] = codec
        self.metrics.codec.labels(self.channel, quality, codec).set(1)

    def _start_worker(self, quality, url):
        old = self.workers.get(quality)
        # Without the query string: Twitch's carries the access token.
        shown = urllib.parse.urlsplit(url)._replace(query="").geturl()
        self.logger.info("%s %s from %s", "Replacing" if old else "Recording", quality, shown)
        # A new URL may be a restarted encoder that rewrote its init sections in place.
        self.init_sections[quality].forget()
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
    ended; ask for a refresh after backoff and end. Encrypted playlists:
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
        self._get = self.metrics.timed(
            "downloader_playlist_fetch",
            lambda: self.session.get(self.url, timeout=PLAYLIST_TIMEOUTS),
            channel=self.channel,
            quality=quality,
        )

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
                self.wait(backoff_delay(failures, (interval, POLL_LIMITS[1])))
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
            self.wait(interval)

    def wait(self, seconds):
        """Sleep about `seconds` between polls, waking at once on stop. A seam for tests."""
        sleep(self.stopping, seconds)

    def fetch(self):
        """One poll: fetch and parse the media playlist. A seam for tests."""
        response = self._get()
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
            if segment.discontinuity and segment.init is not None:
                # The encoder may have restarted, rewriting its init section in
                # place: fetch it again (a few KB; Twitch's spurious ones cost no more).
                self.manager.init_sections[self.quality].forget(segment.init)
            self.manager.spawn_getter(SegmentGetter(self, placed))
        return new


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
    parser.add_argument(
        "--twitch-supported-codecs",
        default=",".join(TWITCH_CODECS),
        help="codecs Twitch may send, best first (default: %(default)s, for the best "
        "quality; h264 alone records only H.264 transcodes on HEVC/AV1 channels)",
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
        twitch["supported_codecs"] = parse_supported_codecs(args.twitch_supported_codecs)
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
