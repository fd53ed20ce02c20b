"""streamvault backfiller: fill a node's store from its peers, verifying every byte.

Every node records on its own, and every node misses something: a restart, a
network blip, a segment the origin served to one node but not another. The
backfiller makes every node's store the union of what all nodes recorded, by
reading the peers' restreamers (`GET /files/...`, `GET /segments/...`) and writing what is missing here.

The pure rules (which hours, which segments, the node file) are in `plan.py`,
the peer's HTTP client in `client.py`, the body check in `media.py`, the
metrics in `metrics.py`; this module holds the workers and the command line.
Read top to bottom: `Manager` keeps one `PeerWorker` per peer node, following
`--nodes` and `--node-file` (re-read when it changes). A worker runs passes: for
each channel it lists the peer's hours (`hours_to_backfill`: the union over
qualities, newest first, from `--start` on), then each hour's segment names,
decides what this node lacks (`segments_to_fetch`), and fetches those in random
order, `--concurrency` at a time. `PeerWorker.fetch_segment` streams one
segment into the store through `PeerClient.fetch`, which renames it into place
only if the bytes hash to the name. The workers of a node share the set of fetches in flight, so a
segment that several peers offer is fetched once.

How it fails, and what it does about it. Nothing a peer says is trusted:

- Every hour goes through `parse_hour` and every segment name through
  `validate_name_part` and `parse_segment_path` (which must agree with the
  channel, quality and hour asked for) before it gets near the filesystem. A
  bad entry is skipped, logged and counted; the rest of the listing is used.
- Every body is read whole into memory (bounded by --max-segment-mb), then
  hashed while it is written to a `temp` file; if the hash is not the one in
  the name, or the body is not the media its name says
  (`media.check_segment`), the file is deleted, logged and counted.
  Truncated, oversized, slow and reset bodies never reach the disk: only
  whole, verified files are ever renamed into place.
- A listing that cannot be read (connection refused or reset, 5xx, garbage or
  oversized JSON, a peer that stops answering) ends the pass for that peer.
  A pass with any error is followed by an exponentially growing, jittered
  wait (`BACKOFF`), so a broken or lying peer costs little, and each peer has
  its own worker, so it never slows the others.
- SIGTERM stops the workers at once: a pass in progress is abandoned, and the
  fetches in flight are killed; a body already being stored (a millisecond
  or so, with no yield to the hub) is finished, verified or removed, as it
  would have been.
"""

import datetime
import logging
import os
import random
import shutil
import socket
import sys
import time
from argparse import ArgumentTypeError

import gevent
import gevent.event
import gevent.pool

from common.backoff import Backoff, jitter
from common.segments import list_segments, parse_hour, parse_segment_path, validate_name_part
from common.service import STOP_TIMEOUT, Stoppable, base_parser, run_service, setup_logging
from common.times import UTC, parse_time

from .client import MAX_SEGMENT_BYTES, HashMismatch, PeerClient, PeerError
from .metrics import Metrics
from .plan import (
    hours_to_backfill,
    normalize_url,
    parse_node_lines,
    peer_from_url,
    segments_to_fetch,
)

logger = logging.getLogger(__name__)

# Seconds between two passes over one peer that went well. A pass over a store
# that is already complete is only listings (one per hour and quality), and
# anything younger than --recent-cutoff (2 min) is left alone anyway, so once a
# minute fills a node's gap about as soon as it may.
PASS_INTERVAL = 60
# After a pass with errors: wait BACKOFF[0] seconds, doubling with each failed
# pass in a row up to BACKOFF[1]. A peer that restarts is back within seconds;
# one that is down for hours is asked every 5 minutes.
BACKOFF = (2, 300)  # first, longest; seconds
# Seconds a segment another worker (peer) is fetching may take before this one
# fetches it too (a hedged fetch): a healthy peer sends even a 6 MB segment in
# well under a second between nodes, while one trickling a byte a second took
# every segment it had started with it to its 120 s deadline, and with them
# the good peer's pass (121 s instead of 2.5 s).
HEDGE_AFTER = 5
# Waits between hours whose listings were all empty (404 or []), doubling from
# the first to the last while they keep coming. An honest peer has a few (an
# hour whose segments retention removed); a peer listing 200,000 such hours
# made ~630 requests a second without this, and now makes about one.
EMPTY_BACKOFF = (0.01, 1)  # first, longest; seconds
# Seconds after a worker starts during which a peer that has never answered
# may refuse connections quietly (INFO): nodes start together (run-local
# --nodes 2, a compose project), and a backfiller is often up before its peers'
# restreamers. After that, or once the peer has answered, it is a WARNING.
STARTUP_GRACE = 60
# Seconds between two looks (a stat) at --node-file: it is re-read as soon as
# it changes, in place or replaced by a rename (an editor saving), and in any
# case every NODE_FILE_INTERVAL, which also restarts crashed workers.
NODE_FILE_POLL = 2
NODE_FILE_INTERVAL = 60
# Flag defaults (also PeerWorker's). Segments younger than this are left to
# the local downloader, which is probably still fetching them: it retries a
# segment for up to a minute after it appears in the playlist.
DEFAULT_RECENT_CUTOFF = datetime.timedelta(seconds=120)
# Segments fetched at once from each peer: enough to fill a link between
# nodes with 500 KB segments, few enough that a peer serving editors too is
# never swamped.
DEFAULT_CONCURRENCY = 5
# Fetching stops (for the pass, which then backs off) while the store's disk
# has less free than this: the downloader writes ~1 GB an hour per channel at
# source quality, and must never be starved of space by backfilling.
DEFAULT_MIN_FREE_BYTES = 2 * 2**30
# --- one peer ---------------------------------------------------------------


class PeerWorker(Stoppable):
    """Backfills this node's store from one peer, pass after pass, backing off on errors.

    `start` is None (every hour), a datetime, or a timedelta (that long before
    each pass). Counters of the last pass (`fetched`, `errors`) and `passes`
    are kept for the backdoor and tests.
    """

    def __init__(
        self,
        peer,
        base_dir,
        channels,
        qualities,
        *,
        metrics,
        start=None,
        recent_cutoff=DEFAULT_RECENT_CUTOFF,
        concurrency=DEFAULT_CONCURRENCY,
        max_segment_bytes=None,
        min_free_bytes=DEFAULT_MIN_FREE_BYTES,
        in_flight=None,
    ):
        super().__init__()
        # Store path -> Event set when done, for the fetches in flight in all
        # of this node's workers: two peers usually list the same missing
        # segment, and it need only come from one. Whoever finds it taken
        # defers it to the end of its pass, then fetches it if the other
        # worker failed (a lying peer must not cost us a good peer's copy).
        self.in_flight = {} if in_flight is None else in_flight
        self.deferred = []
        self.refused = {}  # kind -> [count, first name, first error], this pass
        self.peer = peer
        self.base_dir = base_dir
        self.channels = list(channels)
        self.qualities = list(qualities)
        self.metrics = metrics
        self.start = start
        self.recent_cutoff = recent_cutoff
        self.concurrency = concurrency
        self.logger = logging.getLogger(f"backfiller.worker({peer.name})")
        self.min_free_bytes = min_free_bytes
        self.client = PeerClient(peer, concurrency, max_segment_bytes)
        self.pool = gevent.pool.Pool(concurrency)
        self.backoff = Backoff(BACKOFF)
        self.started = time.monotonic()
        self.answered = False  # has the peer ever answered a listing?
        self.passes = 0
        self.fetched = 0
        self.errors = 0

    def __repr__(self):
        return f"<PeerWorker {self.peer.name} {self.peer.url}>"

    # The loop.

    def run(self, once=False):
        """Pass, wait, repeat until stopped (or once). Never raises for a peer's fault."""
        self.logger.info("Backfilling from %s", self.peer.url)
        try:
            while not self.stopping.is_set():
                ok = self._guarded_pass()
                if once or self.stopping.is_set():
                    break
                if ok:
                    self.backoff.success()
                    delay = PASS_INTERVAL
                    self.metrics.backoff.labels(self.peer.name).set(0)
                else:
                    delay = self.backoff.failure()
                    self.metrics.backoff.labels(self.peer.name).set(delay)
                    self.logger.info("Pass had errors; next pass in ~%ss", delay)
                self.stopping.wait(jitter(delay))
        finally:
            self.pool.kill()
            self.client.close()
        self.logger.info("Stopped backfilling from %s", self.peer.url)

    def _guarded_pass(self):
        """Run one pass in its own greenlet, so that stop() can abandon it mid-request.

        Returns True if the pass completed without any error.
        """
        greenlet = gevent.spawn(self._pass_catching)
        gevent.wait([greenlet, self.stopping], count=1)
        if not greenlet.ready():
            # Stopping: abandon the pass, then kill its fetches (their writers
            # remove their temp files as they die).
            greenlet.kill()
            self.pool.kill()
            return False
        return greenlet.value

    def _pass_catching(self):
        self.fetched = self.errors = 0
        self.deferred = []
        self.refused = {}
        try:
            self.metrics.run_pass(self)
        except PeerError as e:
            if e.kind == "connection" and self.not_up_yet():
                self.errors += 1
                self.metrics.errors.labels(self.peer.name, e.kind).inc()
                self.logger.info("Peer not up yet, will retry: %s", e)
            else:
                self.error(e.kind, "Pass abandoned: %s", e)
        except Exception:
            self.errors += 1
            self.metrics.errors.labels(self.peer.name, "unexpected").inc()
            self.logger.exception("Pass failed")
        finally:
            self.passes += 1
            self.log_refused()
        self.logger.info("Pass done: %d segments fetched, %d errors", self.fetched, self.errors)
        return self.errors == 0

    def not_up_yet(self):
        """True while a connection failure is the expected one of a peer still starting."""
        return not self.answered and time.monotonic() - self.started < STARTUP_GRACE

    def refuse(self, kind, name, error):
        """Count a segment the peer failed to give us; logged once per kind and pass.

        A lying peer can fail thousands of segments a minute: one WARNING line
        each (6,140 in 60 s from one peer) would drown every other log line.
        Each is logged at DEBUG; `log_refused` sums them up.
        """
        self.errors += 1
        self.metrics.errors.labels(self.peer.name, kind).inc()
        self.logger.debug("Could not fetch %s: %s", name, error)
        refused = self.refused.setdefault(kind, [0, name, error])
        refused[0] += 1

    def log_refused(self):
        for kind, (count, name, error) in sorted(self.refused.items()):
            self.logger.warning(
                "%d segments refused this pass (%s), e.g. %s: %s", count, kind, name, error
            )
        self.refused = {}

    def error(self, kind, message, *args, count=1):
        """Count and log a peer error (one log line, even for many bad entries)."""
        self.errors += count
        self.metrics.errors.labels(self.peer.name, kind).inc(count)
        self.logger.warning(message, *args)

    def start_time(self):
        if isinstance(self.start, datetime.timedelta):
            return datetime.datetime.now(UTC) - self.start
        return self.start

    def backfill_pass(self):
        """List and fetch everything missing here from the peer; returns the count fetched.

        Raises PeerError if a listing cannot be read: the rest of the pass is
        abandoned (a peer that fails one listing usually fails the next, and
        each could cost a timeout), but the fetches already started are let
        finish. Fetches are counted in `self.fetched`/`self.errors` as they
        finish; all are done on return.
        """
        empty = Backoff(EMPTY_BACKOFF)
        try:
            for channel in self.channels:
                hour_lists = [self.list_hours(channel, quality) for quality in self.qualities]
                self.answered = True
                for hour in hours_to_backfill(hour_lists, self.start_time()):
                    listed = 0
                    for quality in self.qualities:
                        if self.stopping.is_set():
                            return self.fetched
                        listed += self.backfill_hour(channel, quality, hour)
                    if listed:
                        empty.success()
                    else:
                        empty.failure()
                        if empty.wait(self.stopping):
                            return self.fetched
        except PeerError:
            self.pool.join()
            raise
        self.pool.join()
        # Segments another worker was fetching: once it is done, or has taken
        # HEDGE_AFTER (that peer is slow), fetch those still missing from here
        # too. Two fetches of one name are harmless: same bytes, same name.
        if self.deferred and not self.stopping.is_set():
            deferred, self.deferred = self.deferred, []
            gevent.wait([other for _, other in deferred], timeout=HEDGE_AFTER)
            for segment, _ in deferred:
                self.pool.spawn(self.fetch_segment, segment, hedged=True)
            self.pool.join()
        return self.fetched

    def backfill_hour(self, channel, quality, hour):
        """Fetch what this node lacks of one hour; returns how many names the peer listed."""
        remote = self.list_remote_segments(channel, quality, hour)
        if not remote:
            return 0
        local = list_segments(os.path.join(self.base_dir, channel, quality, hour))
        wanted = segments_to_fetch(remote, local, datetime.datetime.now(UTC), self.recent_cutoff)
        # Random order, so that workers on different nodes (and this node's
        # workers for other peers) rarely fetch the same segment at once.
        random.shuffle(wanted)
        for segment in wanted:
            if self.stopping.is_set():
                return
            self.check_free_space()
            self.pool.spawn(self.fetch_segment, segment)  # waits for a free slot
        return len(remote)

    def check_free_space(self):
        """Raise PeerError("low_disk") if the store's disk is below min_free_bytes.

        Not the peer's fault, but it ends the pass the same way (fetches in
        flight finish, then the pass backs off), so the downloader keeps the
        space it needs. A disk we cannot even stat fails the fetch instead.
        """
        if not self.min_free_bytes:
            return
        try:
            free = shutil.disk_usage(self.base_dir).free
        except FileNotFoundError:
            return  # an empty store not made yet: the writer makes it
        if free < self.min_free_bytes:
            raise PeerError(
                "low_disk",
                f"{free // 2**20} MB free on {self.base_dir}, under the "
                f"{self.min_free_bytes // 2**20} MB kept free; not fetching",
            )

    # Listings.

    def list_hours(self, channel, quality):
        """The peer's hours for one channel and quality; bad entries skipped and counted."""
        hours, bad = [], []
        for value in self.client.get_list("files", channel, quality):
            try:
                parse_hour(value)
            except ValueError as e:
                bad.append(str(e))
            else:
                hours.append(value)
        if bad:
            self.error(
                "bad_listing",
                "%d bad hours listed for %s/%s, e.g. %s",
                len(bad),
                channel,
                quality,
                bad[0],
                count=len(bad),
            )
        return hours

    def list_remote_segments(self, channel, quality, hour):
        """The peer's segments for one hour, parsed; bad names skipped and counted."""
        segments, bad = [], []
        for value in self.client.get_list("files", channel, quality, hour):
            try:
                name = validate_name_part(value, "segment name")
                segments.append(
                    parse_segment_path(name, channel=channel, quality=quality, hour=hour)
                )
            except ValueError as e:
                bad.append(str(e))
        if bad:
            self.error(
                "bad_listing",
                "%d bad names listed for %s/%s/%s, e.g. %s",
                len(bad),
                channel,
                quality,
                hour,
                bad[0],
                count=len(bad),
            )
        return segments

    # Fetching one segment.

    def fetch_segment(self, segment, hedged=False):
        """Fetch one segment into the store, or log and count why not. Never raises."""
        labels = (self.peer.name, segment.channel, segment.quality)
        try:
            size = self._fetch(segment, hedged)
        except HashMismatch as e:
            self.metrics.hash_mismatches.labels(*labels).inc()
            self.refuse(e.kind, segment.name, e)
        except PeerError as e:
            self.refuse(e.kind, segment.name, e)
        except OSError as e:
            # Our own disk, not the peer: full, read-only, permissions.
            self.errors += 1
            self.metrics.errors.labels(self.peer.name, "local").inc()
            self.logger.error("Could not store %s: %s", segment.name, e)
        except Exception:
            self.errors += 1
            self.metrics.errors.labels(self.peer.name, "unexpected").inc()
            self.logger.exception("Unexpected error fetching %s", segment.name)
        else:
            if size is not None:
                self.fetched += 1
                self.metrics.segments.labels(*labels).inc()
                self.metrics.bytes.labels(*labels).inc(size)

    def _fetch(self, segment, hedged=False):
        """Stream one segment into a temp file; rename it into place only if its hash matches.

        Returns its size, or None if it is here already, is no longer on the
        peer, or is being fetched by another worker of this node (see
        `in_flight`): then it is put in `deferred`, for the end of the pass,
        unless `hedged` (fetched anyway, beside the other worker's fetch).
        Raises PeerError (HashMismatch for a lie), or OSError if our own disk
        fails; the temp file is removed on every way out but success.
        """
        channel, quality, hour, name = segment.channel, segment.quality, segment.hour, segment.name
        path = os.path.join(self.base_dir, channel, quality, hour, name)
        if os.path.exists(path):
            return None
        if hedged:
            return self._fetch_from_peer(segment)
        other = self.in_flight.get(path)
        if other is not None:
            self.deferred.append((segment, other))
            return None
        done = gevent.event.Event()
        self.in_flight[path] = done
        try:
            return self._fetch_from_peer(segment)
        finally:
            del self.in_flight[path]
            done.set()

    def _fetch_from_peer(self, segment):
        size = self.client.fetch(segment, self.base_dir)
        if size is None:
            # Listed a moment ago, gone now: the peer's retention got there
            # first. Nobody's fault, so no backoff.
            self.logger.info("%s is gone from the peer", segment.name)
        return size


# --- all peers --------------------------------------------------------------


class Manager(Stoppable):
    """Keeps one PeerWorker running per peer, following --nodes and --node-file.

    The node file is re-read when it changes (looked at every NODE_FILE_POLL)
    and every NODE_FILE_INTERVAL: workers are started for new peers and
    stopped for removed ones, without a restart. An unreadable node file keeps
    the peers we have (a file being rewritten must not stop every worker), and
    says so in one line, once until it changes. With no peers at all (none
    given, or an empty or missing file) the manager idles, waiting for the
    file, rather than exiting: a service restarted on exit would crash-loop.
    This node itself (by `node_name` or one of `self_urls`) is never a peer.
    With `once`, each worker makes one pass and `run` returns.
    """

    def __init__(
        self,
        base_dir,
        channels,
        qualities,
        *,
        nodes=(),
        node_file=None,
        node_name=None,
        self_urls=(),
        metrics=None,
        once=False,
        **worker_args,
    ):
        super().__init__()
        self.base_dir = base_dir
        self.channels = channels
        self.qualities = qualities
        self.nodes = [peer_from_url(url) for url in nodes]
        self.node_file = node_file
        self.node_name = node_name
        self.self_urls = {normalize_url(url) for url in self_urls}
        self.metrics = metrics or Metrics()
        self.once = once
        self.worker_args = worker_args
        self.workers = {}  # Peer -> (PeerWorker, greenlet)
        self.in_flight = {}  # shared by the workers: see PeerWorker
        self._file_peers = []
        self._file_state = None  # what the node file's last stat (or error) said
        self._file_problem = None  # the last read error logged, so it is logged once
        self._idle_logged = False

    def node_file_state(self):
        """What changes when the node file does: (inode, mtime, size), or the error."""
        try:
            stat = os.stat(self.node_file)
        except OSError as e:
            return type(e).__name__
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def read_node_file(self):
        """The node file's text, or None (logged once per distinct problem, counted)."""
        try:
            if os.path.isdir(self.node_file):
                raise IsADirectoryError(
                    f"{self.node_file} is a directory, not a node file (a Docker bind "
                    "mount of a host file that did not exist makes one: mount the "
                    "file's directory instead)"
                )
            with open(self.node_file) as f:
                text = f.read()
        except OSError as e:
            self.metrics.node_file_errors.inc()
            problem = str(e) if isinstance(e, IsADirectoryError) else f"{e.strerror}: {e.filename}"
            if problem != self._file_problem:
                logger.warning("Could not read node file, keeping the peers we have: %s", problem)
                self._file_problem = problem
            return None
        if self._file_problem is not None:
            logger.info("Node file %s readable again", self.node_file)
            self._file_problem = None
        return text

    def read_peers(self):
        """The current peers: --nodes plus the node file, minus this node, each URL once."""
        if self.node_file is not None:
            self._file_state = self.node_file_state()
            text = self.read_node_file()
            if text is not None:
                peers, errors = parse_node_lines(text)
                for error in errors:
                    self.metrics.node_file_errors.inc()
                    logger.warning("Skipping bad line in %s: %s", self.node_file, error)
                self._file_peers = peers
        result, urls = [], set()
        for peer in [*self.nodes, *self._file_peers]:
            if peer.url in self.self_urls or peer.name == self.node_name or peer.url in urls:
                continue
            urls.add(peer.url)
            result.append(peer)
        return result

    def refresh(self):
        """Start workers for new peers, stop those of removed ones, restart crashed ones."""
        peers = self.read_peers()
        for peer in list(self.workers):
            if peer not in peers:
                logger.info("Peer %s (%s) removed", peer.name, peer.url)
                self.workers.pop(peer)[0].stop()
        for peer in peers:
            if peer in self.workers and self.workers[peer][1].dead:
                logger.error("Worker for %s died; restarting it", peer.name)
                del self.workers[peer]
            if peer not in self.workers:
                worker = PeerWorker(
                    peer,
                    self.base_dir,
                    self.channels,
                    self.qualities,
                    metrics=self.metrics,
                    in_flight=self.in_flight,
                    **self.worker_args,
                )
                self.workers[peer] = worker, gevent.spawn(worker.run, once=self.once)
        self.metrics.peers.set(len(self.workers))
        if not self.workers and not self._idle_logged:
            waiting = f"waiting for peers in {self.node_file}" if self.node_file else "idle"
            logger.info("No peers to backfill from (give --nodes or --node-file): %s", waiting)
        self._idle_logged = not self.workers

    def run(self):
        try:
            self.refresh()
            if self.once:
                greenlets = [greenlet for _, greenlet in self.workers.values()]
                gevent.wait([gevent.spawn(gevent.joinall, greenlets), self.stopping], count=1)
                return
            last_refresh = time.monotonic()
            while not self.stopping.wait(jitter(NODE_FILE_POLL)):
                changed = self.node_file is not None and (
                    self.node_file_state() != self._file_state
                )
                if changed or time.monotonic() - last_refresh >= NODE_FILE_INTERVAL:
                    self.refresh()
                    last_refresh = time.monotonic()
        finally:
            for worker, _ in self.workers.values():
                worker.stop()
            gevent.joinall([g for _, g in self.workers.values()], timeout=STOP_TIMEOUT - 1)


# --- command line -----------------------------------------------------------


def _name_list(what):
    def parse(text):
        try:
            return [validate_name_part(v.strip(), what) for v in text.split(",") if v.strip()]
        except ValueError as e:
            raise ArgumentTypeError(str(e)) from None

    return parse


def _url_list(text):
    try:
        return [normalize_url(url) for url in text.split(",") if url.strip()]
    except ValueError as e:
        raise ArgumentTypeError(str(e)) from None


def parse_start(text):
    """`--start`: a number of hours before each pass, or an ISO time (UTC unless it says)."""
    try:
        hours = float(text)
    except ValueError:
        pass
    else:
        if not hours >= 0:
            raise ArgumentTypeError(f"bad start {text!r}: hours ago must be 0 or more")
        return datetime.timedelta(hours=hours)
    try:
        return parse_time(text)
    except ValueError as e:
        raise ArgumentTypeError(f"bad start {text!r}: expected hours ago, or {e}") from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return value


def _megabytes(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value >= 0:
        raise ArgumentTypeError(f"expected megabytes (0 or more), not {text!r}")
    return int(value * 2**20)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value >= 0:
        raise ArgumentTypeError(f"expected seconds (0 or more), not {text!r}")
    return datetime.timedelta(seconds=value)


def parse_args(argv=None):
    parser = base_parser("backfiller", __doc__.splitlines()[0], metrics_port=8002)
    parser.add_argument(
        "--channels",
        type=_name_list("channel"),
        required=True,
        metavar="NAME[,NAME]",
        help="channels to backfill",
    )
    parser.add_argument(
        "--qualities",
        type=_name_list("quality"),
        default=["source"],
        metavar="QUALITY[,QUALITY]",
        help="qualities to backfill (default: source)",
    )
    parser.add_argument(
        "--nodes", type=_url_list, default=[], metavar="URL[,URL]", help="peers' restreamer URLs"
    )
    parser.add_argument(
        "--node-file",
        metavar="FILE",
        help="file of peers, one 'NAME URL' or 'URL' a line, '#' comments; "
        "re-read when it changes; may be missing or empty at first (then we wait)",
    )
    parser.add_argument(
        "--node-name",
        default=socket.gethostname(),
        metavar="NAME",
        help="this node's name in the node file, skipped as a peer (default: hostname)",
    )
    parser.add_argument(
        "--self-url",
        type=_url_list,
        default=[],
        metavar="URL[,URL]",
        help="this node's own restreamer URLs, skipped as peers",
    )
    parser.add_argument(
        "--start",
        type=parse_start,
        metavar="HOURS_AGO|ISO_TIME",
        help="backfill only hours from then on (default: all)",
    )
    parser.add_argument(
        "--recent-cutoff",
        type=_seconds,
        default=DEFAULT_RECENT_CUTOFF,
        metavar="SECONDS",
        help="leave segments younger than this many seconds to the downloader "
        f"(default: {DEFAULT_RECENT_CUTOFF.total_seconds():g})",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"segments fetched at once from each peer (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--max-segment-mb",
        dest="max_segment_bytes",
        type=_megabytes,
        default=MAX_SEGMENT_BYTES,
        metavar="MB",
        help=f"refuse a segment bigger than this (default: {MAX_SEGMENT_BYTES // 2**20})",
    )
    parser.add_argument(
        "--min-free-mb",
        dest="min_free_bytes",
        type=_megabytes,
        default=DEFAULT_MIN_FREE_BYTES,
        metavar="MB",
        help="stop fetching while the store's disk has less free; 0 = never "
        f"(default: {DEFAULT_MIN_FREE_BYTES // 2**20})",
    )
    parser.add_argument(
        "--run-once", action="store_true", help="make one pass over every peer, then exit"
    )
    args = parser.parse_args(argv)
    if not args.channels or not args.qualities:
        parser.error("give at least one channel and one quality")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    manager = Manager(
        args.base_dir,
        args.channels,
        args.qualities,
        nodes=args.nodes,
        node_file=args.node_file,
        node_name=args.node_name,
        self_urls=args.self_url,
        once=args.run_once,
        start=args.start,
        recent_cutoff=args.recent_cutoff,
        concurrency=args.concurrency,
        max_segment_bytes=args.max_segment_bytes,
        min_free_bytes=args.min_free_bytes,
    )
    sys.exit(
        run_service(
            "backfiller",
            [manager],
            metrics_port=args.metrics_port,
            host=args.host,
            backdoor_port=args.backdoor_port,
            backdoor_socket=args.backdoor_socket,
            backdoor_locals={"manager": manager},
        )
    )
