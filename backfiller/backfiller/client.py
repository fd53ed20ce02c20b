"""Talking to one peer's restreamer: listings and segment bodies, trusting nothing.

`PeerClient` does the HTTP: `get_list` reads one JSON listing, `fetch`
copies one segment into the store. Every way a peer can fail or lie ends in
a `PeerError` whose `kind` labels the error metric; deciding what to ask for,
counting and logging are the worker's (`main.py`).

How it fails, and what it does about it:

- Per-socket-operation timeouts never fire on a peer that sends one byte a
  second, so every request also runs under a whole-request `deadline`.
- Redirects are never followed: a peer answering 302 to another host (or to
  an internal address only it can reach) gets an `http` error, as for any
  status but 200 and 404. Peers are restreamers, which never redirect.
- Bodies are read exactly as sent, never decoded (`read_body`), and bounded:
  a listing by MAX_LISTING_BYTES, a segment by MAX_SEGMENT_BYTES, before they
  fill memory or the disk.
- A segment's body is read whole into memory, then written to a `temp` file
  while hashed, in the fetching greenlet (`store_verified` says why), and
  renamed into place only if the bytes hash to its name (`HashMismatch`
  otherwise) and parse as their container with the timeline the name says
  (`media.check_segment`; `bad_media` otherwise); on every other way out the
  writer removes its temp file.
"""

import contextlib
import http.client
import json
import select
import urllib.parse

import gevent

from common.segments import SegmentWriter

from .media import check_segment

# Listing timeouts: per socket operation (connect, each read), then for the whole
# listing. An hour of 2 s segments is 1,800 names, ~110 KB of JSON: well under a
# second from a healthy peer. The whole-listing deadline catches a peer that
# trickles bytes, which a per-read timeout never would.
LIST_TIMEOUTS = (5, 30)  # socket, whole; seconds
# Segment timeouts, likewise. A 6 s 1080p60 segment is ~6 MB: seconds even over
# a slow link between nodes; two minutes bounds a peer that trickles.
FETCH_TIMEOUTS = (10, 120)  # socket, whole; seconds
# Hostile-peer limits: a listing of an hour of 0.5 s segments is ~500 KB. The
# largest real segments: Twitch's 1080p60 source is ~2 MB a 2 s segment; 10 s
# segments of a 20 Mb/s origin are ~25 MB. A few times that (the default of
# --max-segment-mb) bounds what ten hostile fetches at once can put on disk
# (512 MB each was allowed before: 1.8 GB of temp files in one pass).
MAX_LISTING_BYTES = 8 * 2**20
MAX_SEGMENT_BYTES = 64 * 2**20
# Bytes per read of a body without a Content-Length (chunked, or until the peer
# closes); one with a Content-Length is read straight into a buffer of its
# size. Big enough that per-chunk Python work is negligible next to the copy.
CHUNK_SIZE = 256 * 2**10
# Bytes a body is written and hashed in, piece by piece: the hash then reads
# each piece while the file write has just brought it into the CPU cache. On
# bench/backfill.py (532 KB segments) 128 KB pieces took 10-20% less of the
# client's CPU than writing, then hashing, the whole body (1.38 against 1.74 s
# an hour, median of 6); 32-64 KB were no better.
STORE_PIECE = 128 * 2**10
USER_AGENT = "streamvault-backfiller"
HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}


class PeerError(Exception):
    """A peer failed, or said something we refuse. `kind` labels the error metric."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class HashMismatch(PeerError):
    """A segment's bytes do not hash to its name: the peer lied or the body broke."""

    def __init__(self, message):
        super().__init__("hash_mismatch", message)


@contextlib.contextmanager
def deadline(seconds, what):
    """Raise PeerError("timeout") if the block takes longer than `seconds` in all.

    Per-socket-operation timeouts never fire on a peer that sends one byte a
    second; this does.
    """
    timeout = gevent.Timeout(seconds)
    timeout.start()
    try:
        yield
    except gevent.Timeout as e:
        if e is not timeout:
            raise
        raise PeerError("timeout", f"{what}: not done after {seconds}s") from None
    finally:
        timeout.close()


def read_body(response, limit, url):
    """The body of `response` exactly as sent, at most `limit` bytes; PeerError otherwise.

    Never decoded: http.client does not undo a `Content-Encoding`, so a
    compressed body fails its hash (or its JSON) instead of expanding, maybe a
    thousandfold, in memory. We ask for `identity` anyway. With a
    Content-Length (every restreamer answer) the body is read straight into
    one buffer of that size, refused before any read if over `limit`, and a
    body cut short is a `connection` error; without one (chunked, or until
    the peer closes) it grows CHUNK_SIZE at a time up to `limit`.
    """
    length = response.length
    if length is not None:
        if length > limit:
            raise PeerError("too_large", f"{url}: {length} bytes")
        body = bytearray(length)
        view = memoryview(body)
        done = 0
        while done < length:
            count = response.readinto(view[done:])
            if not count:
                raise PeerError("connection", f"{url}: cut short at {done} of {length} bytes")
            done += count
        return body
    body = bytearray()
    while chunk := response.read(CHUNK_SIZE):
        body += chunk
        if len(body) > limit:
            raise PeerError("too_large", f"{url}: over {limit} bytes")
    return body


def is_dropped(connection):
    """True if an idle kept-alive connection was closed by the peer (or sent us junk).

    An idle connection has nothing to read; if its socket is readable, the
    peer closed it (or sent bytes nobody asked for) and it must not be reused.
    """
    sock = connection.sock
    return sock is not None and bool(select.select([sock], [], [], 0)[0])


def check_body(data, segment, url):
    """Raise PeerError("bad_media") unless `data` is the media `segment`'s name says."""
    try:
        check_segment(data, segment.container, segment.duration, whole=segment.type == "full")
    except ValueError as e:
        raise PeerError("bad_media", f"{url}: {e}") from None


class PeerClient:
    """The HTTP side of one peer: its listings and its segments, `concurrency` at once.

    Plain `http.client` connections, kept alive and reused (up to
    `concurrency` + 1 idle). The `requests` library's session, adapter and
    urllib3 layers cost ~0.6 ms of CPU more a request (bench/backfill.py:
    0.4 s of 2.1 s an hour of 500 KB segments), and on 2 cores shared with
    the peer that is wall time too. Redirects are never followed
    (http.client does not), and bodies are never decoded (`read_body`).
    """

    def __init__(self, peer, concurrency, max_segment_bytes=None):
        self.peer = peer
        # None: MAX_SEGMENT_BYTES as it is when fetching (tests change it).
        self.max_segment_bytes = max_segment_bytes
        parts = urllib.parse.urlsplit(peer.url)
        self._connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._netloc = parts.netloc
        self._prefix = parts.path
        self._idle = []  # kept-alive connections, most recently used last
        self._keep = concurrency + 1

    def close(self):
        while self._idle:
            self._idle.pop().close()

    def url(self, *parts):
        return self.peer.url + self._target(*parts)[len(self._prefix) :]

    def _target(self, *parts):
        return self._prefix + "/" + "/".join(urllib.parse.quote(p, safe=":") for p in parts)

    @contextlib.contextmanager
    def _get(self, parts, timeout):
        """GET `parts` from the peer; yields the response, its body for the caller to read.

        `timeout` bounds each socket operation (connect, each read). Network
        failures become PeerError: `timeout`, or `connection` (refused,
        reset, closed, a malformed answer). The connection is kept for the
        next request only if the caller read the whole body; on any other
        way out it is closed.
        """
        url = self.url(*parts)
        connection = self._idle.pop() if self._idle else None
        if connection is None or is_dropped(connection):
            if connection is not None:
                connection.close()
            try:
                connection = self._connection_class(self._netloc, timeout=timeout)
            except http.client.InvalidURL as e:  # a port that is not a number
                raise PeerError("connection", f"{url}: {e}") from None
        elif connection.sock is not None:
            connection.sock.settimeout(timeout)
        connection.timeout = timeout
        try:
            connection.request("GET", self._target(*parts), headers=HEADERS)
            response = connection.getresponse()
            yield response
        except TimeoutError as e:
            connection.close()
            raise PeerError("timeout", f"{url}: {e or 'timed out'}") from None
        except (OSError, http.client.HTTPException) as e:
            connection.close()
            raise PeerError("connection", f"{url}: {e!r}") from None
        except BaseException:
            connection.close()
            raise
        if response.isclosed() and len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            connection.close()

    def get_list(self, *parts):
        """GET a JSON list from the peer. A 404 is an empty list; anything odd is PeerError."""
        url = self.url(*parts)
        with deadline(LIST_TIMEOUTS[1], url), self._get(parts, LIST_TIMEOUTS[0]) as response:
            if response.status == 404:
                return []
            if response.status != 200:
                raise PeerError("http", f"{url}: HTTP {response.status}")
            body = read_body(response, MAX_LISTING_BYTES, url)
        try:
            value = json.loads(body)
        except ValueError as e:
            raise PeerError("bad_json", f"{url}: not JSON: {e}") from None
        if not isinstance(value, list):
            raise PeerError("bad_json", f"{url}: expected a JSON list, got {type(value).__name__}")
        return value

    def fetch(self, segment, base_dir):
        """Fetch one segment into the store under `base_dir`; returns its size.

        None if the peer no longer has it (a 404). Raises PeerError
        (HashMismatch for a lie), or OSError if our own disk fails; nothing
        unverified is left in the store on any way out (`store_verified`).
        """
        parts = ("segments", segment.channel, segment.quality, segment.hour, segment.name)
        url = self.url(*parts)
        limit = self.max_segment_bytes or MAX_SEGMENT_BYTES
        with deadline(FETCH_TIMEOUTS[1], url), self._get(parts, FETCH_TIMEOUTS[0]) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise PeerError("http", f"{url}: HTTP {response.status}")
            body = read_body(response, limit, url)
        # Stored here, in this greenlet, not in a thread: see store_verified.
        return store_verified(base_dir, segment, body, url)


def store_verified(base_dir, segment, body, url):
    """Write `body` as `segment` into the store if it is what the name says; returns its size.

    The bytes are hashed as they are written to a `temp` file, which is
    renamed into place only if the hash is the name's (HashMismatch
    otherwise) and the body is the media the name says (PeerError
    `bad_media`); on every other way out it is removed. Nothing here yields
    to the hub (gevent does not make file I/O cooperative), so a fetch
    killed by a SIGTERM never stops halfway through: the temp file is
    renamed or removed before the kill lands.

    Why not in a thread, where hashing and writing (which release the GIL)
    could run beside the other fetches' reads: on bench/backfill.py a thread
    hand-off a segment cost 0.3 CPU-s more an hour than storing in place and
    made the pass 10% slower, as the thread and the hub wait on each other
    for the GIL. A 500 KB segment holds the hub about a millisecond here;
    the largest we accept (MAX_SEGMENT_BYTES) about 100 ms.
    """
    with SegmentWriter(
        base_dir, segment.channel, segment.quality, segment.start, segment.duration,
        segment.container,
    ) as writer:  # fmt: skip
        view = memoryview(body)
        for at in range(0, len(view), STORE_PIECE):
            writer.write(view[at : at + STORE_PIECE])  # the file's copy, then the hash
        if writer.hash != segment.hash:
            raise HashMismatch(f"{writer.size} bytes from {url} hash to {writer.hash}")
        check_body(body, segment, url)
        writer.finish(segment.type)
        return writer.size
