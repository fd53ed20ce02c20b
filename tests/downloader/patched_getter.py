"""Run the getters for one media playlist in a gevent-patched process; print JSON.

Soft and hard timeouts need attempts to run concurrently, which needs gevent's
monkey-patching; the test process is not patched (other areas' tests share it),
so those tests run this in a child process:

    python -m tests.downloader.patched_getter MEDIA_URL BASE_DIR SOFT HARD
"""

import gevent.monkey

gevent.monkey.patch_all()

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import prometheus_client  # noqa: E402

from downloader import main  # noqa: E402
from downloader.playlist import Timeline  # noqa: E402
from downloader.providers import HLSProvider  # noqa: E402


def run(url, base_dir, soft, hard):
    main.SEGMENT_TIMEOUTS = (soft, hard)
    main.SEGMENT_RETRY = (0.01, 0.02)
    main.SEGMENT_REQUEST_TIMEOUTS = (5, 5)
    registry = prometheus_client.CollectorRegistry()
    metrics = main.Metrics(registry=registry)
    manager = main.ChannelManager("ch", HLSProvider("ch", url), ["source"], base_dir, metrics)
    worker = main.QualityWorker(manager, "source", url, Timeline())
    worker.handle(worker.fetch())
    manager.getters.join(timeout=30)
    samples = {}
    for metric in registry.collect():
        if metric.name in (
            "downloader_segment_attempts",
            "downloader_errors",
            "downloader_segments",
        ):
            for s in metric.samples:
                if s.name.endswith("_total"):
                    key = s.labels.get("reason") or s.labels.get("kind") or s.labels.get("type")
                    samples[f"{metric.name}:{key}"] = s.value
    return samples


if __name__ == "__main__":
    url, base_dir, soft, hard = sys.argv[1:]
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(url, base_dir, float(soft), float(hard))))
