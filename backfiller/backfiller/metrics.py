"""The backfiller's metrics, in one class so each test can use a fresh registry."""

import prometheus_client
from prometheus_client import Counter, Gauge

from common.stats import timed


class Metrics:
    """The backfiller's metrics, registered in `registry` (a fresh one in tests).

    Labels are peers, channels, qualities and error kinds: a few values each.
    Never an hour or a segment name. Error kinds: `connection` (refused, reset,
    cut short), `timeout`, `http` (a status other than 200, or 404), `bad_json`,
    `too_large`, `bad_listing` (one per refused hour or name), `hash_mismatch`,
    `bad_media` (a body that is not the segment its name says), `low_disk`
    (our own disk is below --min-free-mb: fetching stopped),
    `local` (our own disk failed), `unexpected` (a bug: logged with a traceback).
    """

    def __init__(self, registry=prometheus_client.REGISTRY):
        labels = ["peer", "channel", "quality"]
        self.segments = Counter(
            "backfiller_segments", "Segments backfilled", labels, registry=registry
        )
        self.bytes = Counter(
            "backfiller_bytes", "Bytes of segments backfilled", labels, registry=registry
        )
        self.hash_mismatches = Counter(
            "backfiller_hash_mismatches",
            "Segments whose bytes did not hash to their name (deleted)",
            labels,
            registry=registry,
        )
        self.errors = Counter(
            "backfiller_errors",
            "Peer failures and refused answers, by kind",
            ["peer", "kind"],
            registry=registry,
        )
        self.node_file_errors = Counter(
            "backfiller_node_file_errors",
            "Node file reads that failed or had bad lines",
            registry=registry,
        )
        self.peers = Gauge("backfiller_peers", "Peers being backfilled from", registry=registry)
        self.backoff = Gauge(
            "backfiller_backoff_seconds",
            "Current wait before a peer's next pass (0 after a good pass)",
            ["peer"],
            registry=registry,
        )
        self.run_pass = timed(
            "backfiller_pass",
            registry=registry,
            peer=lambda result, worker: worker.peer.name,
            normalize=lambda result, worker: result,
        )(_run_pass)


def _run_pass(worker):
    """One pass of `worker`; returns the number of segments fetched (timed by Metrics)."""
    return worker.backfill_pass()
