"""The restreamer's HTTP API (DESIGN §3): `create_app` and thin routes.

Routes only parse their input (through `params`), ask the store for what they
need and hand it to a writer (`hls` for playlists); none of them holds state of
its own. The store a route reads is `store()`: the `Store` that `create_app`
put in `app.extensions`, so an app is never global and each test makes its own.

Adding a route: write the view function in this module and add one line to
`ROUTES`; or, for a group of routes with their own templates (the editor),
make a blueprint in its own module and register it in `create_app`. Every
route gets, for free: request metrics (`common.flask_stats`), CORS headers, and
errors as one line of text.

How things fail:
- Bad input (malformed time, `end <= start`, a name that is not a segment
  name) is a 400 with a one-line reason; a path part starting with `.` or a
  path resolving outside the store (a symlink out of it) is a 403; anything
  absent is a 404. Werkzeug's own errors (no such route, wrong method, bad
  Range) are rewritten to one line too.
- Anything else (the disk failing under us) is logged with its traceback and
  answered with a one-line 500; the traceback never reaches the client.
"""

import datetime
import logging
import os

import flask
import prometheus_client
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound

from common import flask_stats
from common.segments import (
    get_best_segments,
    list_segments,
    parse_hour,
    parse_segment_path,
    validate_name_part,
)
from common.stats import timed

logger = logging.getLogger(__name__)

# Segments are named by their content's hash: a URL's bytes never change, so
# clients and caches may keep them as long as they like.
SEGMENT_MAX_AGE = 365 * 24 * 3600  # seconds

# CORS: the API is public and read-only, so any origin may read it. Range is
# what a browser player sends for segments; the exposed headers are what it
# reads back.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Range, Content-Type, If-None-Match, If-Modified-Since",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, ETag",
    "Access-Control-Max-Age": "86400",
}


def utc_now():
    return datetime.datetime.now(datetime.UTC)


class Store:
    """One node's segment store, as the routes see it.

    `path()` is the only way a route turns request text into a file path: each
    part is checked on its own (no `.` first, no separators or NUL), and the
    joined path must still be inside the store once symlinks are resolved.
    """

    def __init__(self, base_dir, registry, now=utc_now):
        self.base_dir = os.path.realpath(base_dir)
        self.registry = registry
        self.now = now
        self.best_segments = timed(
            "get_best_segments",
            registry=registry,
            normalize=lambda result, *args, **kwargs: len(result),
            channel=lambda result, channel, *args, **kwargs: channel,
            quality=lambda result, channel, quality, *args, **kwargs: quality,
        )(self._best_segments)

    def _best_segments(self, channel, quality, start, end):
        """`get_best_segments` for one channel and quality (timed as `get_best_segments`)."""
        return get_best_segments(self.path(channel, quality), start, end)

    def path(self, *parts, what=("channel", "quality", "hour", "segment")):
        """The path of `BASE/<channel>/<quality>/<hour>/<name>` (or a prefix of it).

        403 for a part starting with `.` or a path that resolves outside the
        store; 400 for a part that is not a valid name, hour or segment name.
        """
        for part, name in zip(parts, what, strict=False):
            check_part(part, name)
        if len(parts) > 2:
            check_hour(parts[2])
        if len(parts) > 3:
            check_segment_name(parts[3])
        path = os.path.join(self.base_dir, *parts)
        real = os.path.realpath(path)
        if real != self.base_dir and not real.startswith(self.base_dir + os.sep):
            raise Forbidden(f"{'/'.join(parts)} is outside the store")
        return path

    def directory(self, *parts):
        """Like `path`, for a directory that must exist (404 otherwise)."""
        path = self.path(*parts)
        if not os.path.isdir(path):
            names = ("channel", "quality", "hour")
            raise NotFound(f"no {names[len(parts) - 1]} {'/'.join(parts)}")
        return path

    def subdirectories(self, path):
        """Names of the visible directories in `path` that stay inside the store, sorted."""
        names = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                real = os.path.realpath(entry.path)
                if real.startswith(self.base_dir + os.sep):
                    names.append(entry.name)
        return sorted(names)


def check_part(value, what):
    """One path part from a URL: 403 if it starts with `.`, 400 if otherwise unusable."""
    if value.startswith("."):
        raise Forbidden(f"bad {what} {value!r}: starts with '.'")
    try:
        validate_name_part(value, what)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return value


def check_segment_name(name):
    """A segment's file name → its `SegmentInfo` (no start time); 400 if it is not one."""
    try:
        return parse_segment_path(name)
    except ValueError as e:
        raise BadRequest(str(e)) from None


def check_hour(hour):
    try:
        parse_hour(hour)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return hour


def store():
    """The `Store` of the app handling this request."""
    return flask.current_app.extensions["restreamer"]


# --- listings ---------------------------------------------------------------


def list_channels():
    """`GET /files`: the channels in the store."""
    return flask.jsonify(store().subdirectories(store().base_dir))


def list_qualities(channel):
    """`GET /files/<channel>`: the qualities recorded for a channel."""
    return flask.jsonify(store().subdirectories(store().directory(channel)))


def list_hours(channel, quality):
    """`GET /files/<channel>/<quality>`: the hours that have a directory, oldest first.

    Directories whose names are not hours are left out.
    """
    hours = []
    for name in store().subdirectories(store().directory(channel, quality)):
        try:
            parse_hour(name)
        except ValueError:
            continue
        hours.append(name)
    return flask.jsonify(hours)


def list_segment_names(channel, quality, hour):
    """`GET /files/<channel>/<quality>/<hour>`: the hour's segment names, sorted.

    Only names a reader would accept: no dotfiles, no `temp` files, nothing
    that does not parse as a segment name (those are logged by `list_segments`).
    """
    segments = list_segments(store().directory(channel, quality, hour))
    return flask.jsonify(sorted(segment.name for segment in segments))


# --- segments ---------------------------------------------------------------


def segment(channel, quality, hour, name):
    """`GET /segments/<channel>/<quality>/<hour>/<name>`: one segment's bytes.

    Streamed from the file (never read whole into memory), with `Range`,
    `If-None-Match` and `If-Modified-Since` support, and cached forever: the
    name carries the hash of the bytes. The ETag is that hash.
    """
    path = store().path(channel, quality, hour, name)
    info = check_segment_name(name)
    if info.type == "temp":
        raise NotFound(f"no segment {channel}/{quality}/{hour}/{name}")
    if not os.path.isfile(path):
        raise NotFound(f"no segment {channel}/{quality}/{hour}/{name}")
    response = flask.send_file(
        path,
        mimetype="video/mp2t",
        conditional=True,
        etag=info.hash,
        max_age=SEGMENT_MAX_AGE,
    )
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


# (rule, view function, options): every route of the API. The endpoint name is
# the function's name, which also names its metrics (`http_request_latency_<name>`).
ROUTES = [
    ("/files", list_channels, {}),
    ("/files/<channel>", list_qualities, {}),
    ("/files/<channel>/<quality>", list_hours, {}),
    ("/files/<channel>/<quality>/<hour>", list_segment_names, {}),
    ("/segments/<channel>/<quality>/<hour>/<name>", segment, {}),
]


# --- the app ----------------------------------------------------------------


def add_cors_headers(response):
    for header, value in CORS_HEADERS.items():
        response.headers.setdefault(header, value)
    requested = flask.request.headers.get("Access-Control-Request-Headers")
    if requested:
        response.headers["Access-Control-Allow-Headers"] = requested
    return response


def http_error(error):
    """Every HTTP error (ours and werkzeug's) as one line of text, keeping its headers."""
    response = error.get_response()
    reason = " ".join(str(error.description or error.name).split())
    response.set_data(f"{error.code} {error.name}: {reason}\n")
    response.content_type = "text/plain; charset=utf-8"
    return response


def server_error(error):
    """A bug or a failing disk: logged in full, answered with one line."""
    logger.error("Error serving %s %s", flask.request.method, flask.request.path, exc_info=error)
    return flask.Response(
        f"500 Internal Server Error: {type(error).__name__}\n",
        status=500,
        content_type="text/plain; charset=utf-8",
    )


def create_app(base_dir, registry=None, *, now=utc_now):
    """The restreamer's WSGI app, serving the store at `base_dir`.

    `registry` receives the app's metrics and is served at `/metrics`; a fresh
    one is made when none is given (tests), the service passes the global one
    so log counts show too. `now()` gives the current time as an aware
    datetime; tests fix it to make live and finished ranges deterministic.
    """
    if registry is None:
        registry = prometheus_client.CollectorRegistry()
    app = flask.Flask(__name__, static_folder=None)
    app.json.sort_keys = False
    app.extensions["restreamer"] = Store(base_dir, registry, now)
    for rule, view, options in ROUTES:
        app.add_url_rule(rule, view_func=view, **options)
    flask_stats.install(app, registry)
    app.after_request(add_cors_headers)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, server_error)
    return app
