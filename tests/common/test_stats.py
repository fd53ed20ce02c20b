import logging
import shutil
import subprocess

import flask
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from common import flask_stats
from common.stats import LogCountHandler, logger_label, timed


def sample(registry, name, **labels):
    value = registry.get_sample_value(name, labels)
    return 0 if value is None else value


def test_timed_labels_from_args_and_result():
    registry = CollectorRegistry()

    @timed(
        "fetch",
        registry=registry,
        channel=lambda result, channel, quality: channel,
        kind=lambda result, channel, quality: "big" if result > 10 else "small",
        service="test",
    )
    def fetch(channel, quality):
        return 20 if quality == "source" else 5

    assert fetch("chan", "source") == 20
    assert fetch("chan", quality="480p") == 5
    labels = dict(channel="chan", service="test", error="")
    assert sample(registry, "fetch_latency_count", kind="big", **labels) == 1
    assert sample(registry, "fetch_latency_count", kind="small", **labels) == 1
    assert sample(registry, "fetch_cputime_count", kind="big", **labels) == 1
    assert sample(registry, "fetch_latency_sum", kind="big", **labels) >= 0


def test_timed_error_label_and_propagation():
    registry = CollectorRegistry()

    @timed(registry=registry, size=lambda result: len(result))
    def explode():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        explode()
    # The label function cannot run on a failed call's None result: "unknown".
    assert sample(registry, "explode_latency_count", size="unknown", error="KeyError") == 1
    assert sample(registry, "explode_latency_count", size="unknown", error="") == 0


def test_timed_normalize():
    registry = CollectorRegistry()

    @timed("work", registry=registry, normalize=lambda result, n: n)
    def work(n):
        total = 0
        for i in range(n * 10000):
            total += i
        return total

    work(50)
    work(0)  # nothing to divide by: counted, not normalised
    assert sample(registry, "work_latency_count", error="") == 2
    assert sample(registry, "work_latency_normalized_count", error="") == 1
    assert sample(registry, "work_cputime_normalized_count", error="") == 1
    per_unit = sample(registry, "work_latency_normalized_sum", error="")
    total = sample(registry, "work_latency_sum", error="")
    assert 0 < per_unit <= total / 50 * 1.0001


def test_log_count_handler():
    registry = CollectorRegistry()
    handler = LogCountHandler(registry)
    log = logging.getLogger("downloader.worker(chan/source)")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("one")
        log.warning("two")
        log.error("three")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    labels = {"logger": "downloader.worker"}
    assert sample(registry, "log_messages_total", level="WARNING", **labels) == 2
    assert sample(registry, "log_messages_total", level="ERROR", **labels) == 1
    assert logger_label("a.b(c(d))") == "a.b"


def make_app(registry):
    app = flask.Flask("test")

    @app.route("/files/<channel>/<quality>")
    @app.route("/files/<channel>")
    def files(channel, quality=None):
        return flask.jsonify([channel, quality])

    @app.route("/segments/<channel>/<quality>/<hour>/<name>")
    def segment(channel, quality, hour, name):
        def generate():
            yield b"x" * 10
            yield b"y" * 10

        return flask.Response(generate(), content_type="video/mp2t")

    flask_stats.install(app, registry)
    return app


def test_flask_stats_two_endpoints_and_streaming():
    registry = CollectorRegistry()
    app = make_app(registry)
    client = app.test_client()
    with client.get("/files/chan") as response:
        assert response.json == ["chan", None]
    with client.get("/files/chan/source") as response:
        assert response.json == ["chan", "source"]
    response = client.get("/segments/chan/source/2026-11-28T13/x.ts")
    assert response.data == b"x" * 10 + b"y" * 10
    response.close()
    with client.get("/nowhere") as response:
        assert response.status_code == 404

    assert (
        sample(
            registry, "http_request_latency_all_count", endpoint="files", method="GET", status="200"
        )
        == 2
    )
    assert (
        sample(
            registry,
            "http_request_latency_files_count",
            channel="chan",
            quality="source",
            method="GET",
            status="200",
        )
        == 1
    )
    assert (
        sample(
            registry,
            "http_request_latency_files_count",
            channel="chan",
            quality="",
            method="GET",
            status="200",
        )
        == 1
    )
    # Hour and segment name are not labels: they would grow without bound.
    assert (
        sample(
            registry,
            "http_request_latency_segment_count",
            channel="chan",
            quality="source",
            method="GET",
            status="200",
        )
        == 1
    )
    assert (
        sample(
            registry,
            "http_request_latency_all_count",
            endpoint="unknown",
            method="GET",
            status="404",
        )
        == 1
    )
    # Every request has finished, so nothing is in flight.
    assert sample(registry, "http_requests_in_flight_all", endpoint="files", method="GET") == 0
    assert (
        sample(
            registry,
            "http_requests_in_flight_segment",
            channel="chan",
            quality="source",
            method="GET",
        )
        == 0
    )


def test_flask_stats_does_not_buffer_streams():
    registry = CollectorRegistry()
    app = flask.Flask("stream")
    produced = []

    @app.route("/stream")
    def stream():
        def generate():
            for i in range(3):
                produced.append(i)
                yield b"chunk"

        return flask.Response(generate())

    flask_stats.install(app, registry)
    response = app.test_client().get("/stream", buffered=False)
    body = response.iter_encoded()
    next(body)
    # One chunk asked for, one chunk made: the response is not read ahead.
    assert produced == [0]
    assert sample(registry, "http_requests_in_flight_all", endpoint="stream", method="GET") == 1
    response.close()
    assert sample(registry, "http_requests_in_flight_all", endpoint="stream", method="GET") == 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by tools/setup")
def test_metrics_pass_promtool():
    registry = CollectorRegistry()
    app = make_app(registry)

    @timed("listing", registry=registry, normalize=lambda result: 3)
    def listing():
        return 1

    listing()
    LogCountHandler(registry).emit(logging.makeLogRecord({"levelname": "INFO", "name": "x"}))
    client = app.test_client()
    client.get("/files/chan").close()
    client.get("/segments/chan/source/2026-11-28T13/x.ts").close()
    text = client.get("/metrics").data
    assert b"http_request_latency_files_bucket" in text
    assert b"http_request_latency_segment_bucket" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    names = {family.name for family in text_string_to_metric_families(text.decode())}
    assert {"listing_latency_normalized", "log_messages", "http_request_latency_all"} <= names
