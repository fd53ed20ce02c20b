"""Prometheus helpers: `timed` for functions, and counting log lines by level.

Every metric takes a `registry=` so tests can use a fresh one and read samples
back. CPU time is the process's CPU time during the call: under gevent other
greenlets that ran meanwhile are counted too, and child processes (ffmpeg) are
not, so read it as "how busy was this process", not as an exact cost.
"""

import functools
import logging
import time

import prometheus_client
from prometheus_client import Counter, Histogram

# Latency buckets in seconds: from a fast listing (ms) to a long cut (minutes).
DEFAULT_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1, 2, 5, 10, 20, 50, 100, 200, 500,
)  # fmt: skip
# Normalised buckets: seconds per unit of work (per segment, per second of video,
# per byte...). Wider at the low end, since a unit may be tiny.
NORMALIZED_BUCKETS = (
    1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1, 2, 5, 10,
)  # fmt: skip


def _label_value(value, result, args, kwargs):
    if callable(value):
        try:
            value = value(result, *args, **kwargs)
        except Exception:
            value = "unknown"
    return str(value)


def timed(
    name=None,
    *,
    normalize=None,
    buckets=DEFAULT_BUCKETS,
    normalized_buckets=NORMALIZED_BUCKETS,
    registry=prometheus_client.REGISTRY,
    **labels,
):
    """Decorator recording a function's wall and CPU time as histograms.

    Metrics: `<name>_latency` and `<name>_cputime` (seconds), labelled by
    `labels` plus `error`. Each label is a constant or a function
    `(result, *args, **kwargs) -> value`; on failure the function is given
    `result=None`, and a label function that raises gives `unknown`. `error`
    is the exception's class name, or empty; the exception still propagates.

    With `normalize(result, *args, **kwargs)` giving a positive amount of work
    (segments, seconds of video, bytes), `<name>_latency_normalized` and
    `<name>_cputime_normalized` record time per unit. A call whose amount is
    zero, negative or None is not normalised (there is nothing to divide by).
    """

    def decorator(fn):
        metric = name or fn.__name__
        label_names = sorted(labels) + ["error"]
        doc = f"of {fn.__module__}.{fn.__qualname__}"
        histograms = {
            "latency": Histogram(
                f"{metric}_latency", f"Wall time {doc}", label_names,
                buckets=buckets, registry=registry,
            ),
            "cputime": Histogram(
                f"{metric}_cputime", f"Process CPU time {doc}", label_names,
                buckets=buckets, registry=registry,
            ),
        }  # fmt: skip
        if normalize is not None:
            for kind in ("latency", "cputime"):
                histograms[f"{kind}_normalized"] = Histogram(
                    f"{metric}_{kind}_normalized",
                    f"{kind} {doc} per unit of work",
                    label_names,
                    buckets=normalized_buckets,
                    registry=registry,
                )

        def record(wall, cpu, result, error, args, kwargs):
            values = {k: _label_value(v, result, args, kwargs) for k, v in labels.items()}
            values["error"] = type(error).__name__ if error is not None else ""
            histograms["latency"].labels(**values).observe(wall)
            histograms["cputime"].labels(**values).observe(cpu)
            if normalize is None or error is not None:
                return
            try:
                amount = normalize(result, *args, **kwargs)
            except Exception:
                return
            if amount and amount > 0:
                histograms["latency_normalized"].labels(**values).observe(wall / amount)
                histograms["cputime_normalized"].labels(**values).observe(cpu / amount)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            wall_start = time.monotonic()
            cpu_start = time.process_time()
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                record(
                    time.monotonic() - wall_start, time.process_time() - cpu_start,
                    None, e, args, kwargs,
                )  # fmt: skip
                raise
            record(
                time.monotonic() - wall_start, time.process_time() - cpu_start,
                result, None, args, kwargs,
            )  # fmt: skip
            return result

        wrapper.histograms = histograms
        return wrapper

    return decorator


def logger_label(name):
    """A logger name without per-object detail: `downloader.worker(x/y)` → `downloader.worker`.

    Child loggers carry the object they act on in parentheses; as a label that
    would grow without bound, so it is dropped.
    """
    return name.split("(", 1)[0]


class LogCountHandler(logging.Handler):
    """Counts log records by level and logger, so a spike of warnings shows on a graph."""

    def __init__(self, registry=prometheus_client.REGISTRY, level=logging.DEBUG):
        super().__init__(level)
        self.counter = Counter(
            "log_messages",
            "Log lines emitted, by level and logger",
            ["level", "logger"],
            registry=registry,
        )

    def emit(self, record):
        try:
            self.counter.labels(record.levelname, logger_label(record.name)).inc()
        except Exception:
            self.handleError(record)
