"""Per-request metrics for a Flask app, in two families.

- `http_request_latency_all{endpoint,method,status}`: every endpoint in one
  metric, labelled only by what all endpoints share; easy to graph across them.
- `http_request_latency_<endpoint>{<route args>,method,status}`: one metric per
  endpoint, also labelled by its low-cardinality route arguments (channel,
  quality). Prometheus' client refuses one metric name with two label sets, so
  each endpoint gets a name of its own, with the label set fixed from all the
  rules that route to it.
- `http_requests_in_flight_all{endpoint,method}` and
  `http_requests_in_flight_<endpoint>{...}` gauges.

Latency runs to the moment the response is closed, so a streamed response (a
cut, a segment) is timed to its last byte without ever being buffered: the
observation is made in `call_on_close`, which the WSGI server runs after the
body has been sent (or the client went away).

Only this module imports flask; `common/__init__.py` never imports it.
"""

import re
import time

import flask
import prometheus_client
from prometheus_client import Gauge, Histogram

from .stats import DEFAULT_BUCKETS

# Route arguments worth a label: few values each. Hours, segment names and job
# ids are never labels (they would grow without bound).
DEFAULT_LABEL_ARGS = ("channel", "quality")


def metric_suffix(endpoint):
    """The part of an endpoint's metric names after `http_request_latency_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", endpoint)


# Methods kept as label values; any other (a client may send any token) is
# counted as `other`.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
OTHER = "other"


def _as_given(values):
    return values


class RequestStats:
    """Request metrics for `app`, in `registry`.

    Label values must be few, whatever clients send: a route argument becomes
    a label only through `known(values)`, which maps the request's
    `{arg: value}` to values that exist (the restreamer: channels and
    qualities in its store) and anything else to `other`. Without `known` the
    values are taken as given: only for apps whose arguments are bounded.
    (Taken as given, 20,000 requests for random channel names grew a
    restreamer's /metrics from 534 KB to 236 MB.)
    """

    def __init__(
        self,
        app,
        registry=prometheus_client.REGISTRY,
        label_args=DEFAULT_LABEL_ARGS,
        known=_as_given,
    ):
        self.app = app
        self.registry = registry
        self.label_args = set(label_args)
        self.known = known
        self.latency_all = Histogram(
            "http_request_latency_all",
            "Seconds from request to the last byte of the response, all endpoints",
            ["endpoint", "method", "status"],
            buckets=DEFAULT_BUCKETS,
            registry=registry,
        )
        self.in_flight_all = Gauge(
            "http_requests_in_flight_all",
            "Requests being served, all endpoints",
            ["endpoint", "method"],
            registry=registry,
        )
        self._per_endpoint = {}
        app.before_request(self._before)
        app.after_request(self._after)

    def _endpoint_metrics(self, endpoint):
        """The (latency, in-flight, arg names) of one endpoint, made on first use."""
        if endpoint not in self._per_endpoint:
            args = set()
            for rule in self.app.url_map.iter_rules(endpoint):
                args |= rule.arguments
            args = sorted(args & self.label_args)
            suffix = metric_suffix(endpoint)
            latency = Histogram(
                f"http_request_latency_{suffix}",
                f"Seconds from request to the last byte of the response, {endpoint}",
                args + ["method", "status"],
                buckets=DEFAULT_BUCKETS,
                registry=self.registry,
            )
            in_flight = Gauge(
                f"http_requests_in_flight_{suffix}",
                f"Requests being served, {endpoint}",
                args + ["method"],
                registry=self.registry,
            )
            self._per_endpoint[endpoint] = latency, in_flight, args
        return self._per_endpoint[endpoint]

    def _before(self):
        request = flask.request
        if request.endpoint is None:
            # No route matched (a 404 or 405 on its way): counted in the `_all`
            # family only, under endpoint "unknown".
            flask.g.request_stats = (time.monotonic(), "unknown", None)
            return
        values = request.view_args or {}
        _, in_flight, args = self._endpoint_metrics(request.endpoint)
        arg_values = self.known({a: str(values.get(a, "")) for a in args})
        method = _method(request.method)
        self.in_flight_all.labels(request.endpoint, method).inc()
        in_flight.labels(method=method, **arg_values).inc()
        flask.g.request_stats = (time.monotonic(), request.endpoint, arg_values)

    def _after(self, response):
        started = flask.g.pop("request_stats", None)
        if started is None:
            # A before_request handler ahead of ours answered: time it from here.
            started = (time.monotonic(), flask.request.endpoint or "unknown", None)
        start, endpoint, arg_values = started
        method = _method(flask.request.method)
        status = str(response.status_code)

        def finished():
            elapsed = time.monotonic() - start
            self.latency_all.labels(endpoint, method, status).observe(elapsed)
            if arg_values is None:
                return
            latency, in_flight, _ = self._endpoint_metrics(endpoint)
            latency.labels(method=method, status=status, **arg_values).observe(elapsed)
            in_flight.labels(method=method, **arg_values).dec()
            self.in_flight_all.labels(endpoint, method).dec()

        response.call_on_close(finished)
        return response


def _method(method):
    return method if method in METHODS else OTHER


def install(
    app, registry=prometheus_client.REGISTRY, label_args=DEFAULT_LABEL_ARGS, known=_as_given
):
    """Record request metrics for `app` (see `RequestStats`), and serve `registry` at `/metrics`."""
    stats = RequestStats(app, registry, label_args, known)

    @app.route("/metrics")
    def metrics():
        body = prometheus_client.generate_latest(registry)
        return flask.Response(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)

    return stats
