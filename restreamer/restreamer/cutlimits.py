"""Bounds on `/cut`: how many run at once, per node and per client, for how long.

A cut runs ffmpeg (a full re-encode is a core per cut, hundreds of MB each):
64 concurrent full cuts once ran 64 ffmpegs in 5.8 GB and made `/files` take
5 s, and a client reading a byte every 10 s held its ffmpeg for minutes.
`CutLimits` bounds that:

- at most `node_slots` cuts at once on the node: beyond it a 503 with
  `Retry-After` (the node is busy; another node, or later, will do);
- at most `client_slots` of them for one client address: beyond it a 429
  with `Retry-After` (that client is using its share);
- a `type=full` cut no longer than `max_full` (a re-encode is linear in
  length; the cutter's jobs are not bound by this, they do not come here);
- a client that stops reading for `stall_timeout` seconds loses its cut: its
  ffmpegs are killed and its response ends as a failed transfer.

The client is the connection's address: behind a proxy all clients share one
(the proxy should bound them itself); `X-Forwarded-For` is not trusted,
because every published port is reachable by an attacker who would set it.
ffmpeg itself runs at a lower priority than the downloader (see
`common.ffmpeg.NICENESS`).
"""

import collections
import datetime
import logging
import os
import time

import gevent
from prometheus_client import Counter
from werkzeug.exceptions import BadRequest, HTTPException

logger = logging.getLogger(__name__)

# How long a refused client is told to wait: a fast cut takes a few seconds.
RETRY_AFTER = 5  # seconds
# Concurrent cuts per client address: a browser previews one while an editor
# downloads another.
CLIENT_SLOTS = 2
# A full re-encode runs at ~0.3 s per second of video here: 2 hours is ~40 min
# of a core. Longer ranges are the cutter's job (it is not bound by this).
MAX_FULL = datetime.timedelta(hours=2)
# A client that reads nothing for this long is gone or hostile; a player
# pausing a download does not hold an ffmpeg longer than this.
STALL_TIMEOUT = 30  # seconds
# How often the stall watchdog looks.
STALL_CHECK = 1  # seconds


def default_node_slots():
    """One cut per core: more only queue on the CPU and slow the downloader."""
    return max(1, os.cpu_count() or 1)


class Busy(HTTPException):
    """Too many cuts: 503 for the node, 429 for one client; with Retry-After."""

    def __init__(self, code, description):
        self.code = code
        super().__init__(description)

    def get_headers(self, environ=None, scope=None):
        return super().get_headers(environ, scope) + [("Retry-After", str(RETRY_AFTER))]


class Stalled(Exception):
    """The client stopped reading: its cut was ended."""


class CutLimits:
    def __init__(
        self,
        registry,
        node_slots=None,
        client_slots=CLIENT_SLOTS,
        max_full=MAX_FULL,
        stall_timeout=STALL_TIMEOUT,
    ):
        self.node_slots = node_slots or default_node_slots()
        self.client_slots = client_slots
        self.max_full = max_full
        self.stall_timeout = stall_timeout
        self.running = 0
        self.by_client = collections.Counter()
        self.refused = Counter(
            "cuts_refused",
            "Cuts refused by the bounds on /cut, by reason",
            ["reason"],
            registry=registry,
        )

    def check_length(self, type, start, end):
        """400 for a `type=full` cut longer than `max_full`."""
        if type == "full" and end - start > self.max_full:
            self.refused.labels(reason="too_long").inc()
            hours = self.max_full.total_seconds() / 3600
            raise BadRequest(f"a type=full cut may last at most {hours:g} h: use type=fast")

    def acquire(self, client):
        """Take a slot for `client`, or raise `Busy`. Release with `release(client)`."""
        if self.running >= self.node_slots:
            self.refused.labels(reason="node_busy").inc()
            raise Busy(503, f"{self.running} cuts running, the most this node runs: retry later")
        if self.by_client[client] >= self.client_slots:
            self.refused.labels(reason="client_busy").inc()
            raise Busy(429, f"{self.client_slots} cuts already running for {client}")
        self.running += 1
        self.by_client[client] += 1

    def release(self, client):
        self.running -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]

    def stream(self, client, first, chunks):
        """`(body, close)`: the body yields `first` and then `chunks` (a cut);
        `close()` (once the response is done, however it ends) closes the cut
        and releases the client's slot.

        If the server does not come back for the next chunk within
        `stall_timeout` seconds (the client stopped reading, so the write of
        the last one is stuck), a watchdog closes the cut, killing its ffmpegs
        at once; when the write does come back, the body raises `Stalled`. An
        error raised after the status went out must never be turned into a
        normal end: the server then drops the connection without the chunked
        body's final chunk, so every client sees a failed transfer, never a
        short file that looks whole.
        """
        state = {"since": None, "stalled": False, "closed": False}

        def watch():
            while True:
                gevent.sleep(STALL_CHECK)
                since = state["since"]
                if since is not None and time.monotonic() - since > self.stall_timeout:
                    logger.warning("Client %s stopped reading: ending its cut", client)
                    self.refused.labels(reason="stalled").inc()
                    state["stalled"] = True
                    chunks.close()
                    return

        watchdog = gevent.spawn(watch)

        def body():
            for chunk in _chain(first, chunks):
                state["since"] = time.monotonic()
                yield chunk
                state["since"] = None
                if state["stalled"]:
                    break
            if state["stalled"]:
                raise Stalled(f"client {client} stopped reading for {self.stall_timeout} s")

        def close():
            if state["closed"]:
                return
            state["closed"] = True
            if state["stalled"]:
                watchdog.join()  # it is closing the cut: let it finish
            else:
                watchdog.kill()
            chunks.close()
            self.release(client)

        return body(), close


def _chain(first, chunks):
    yield first
    yield from chunks
