"""The restreamer's HTTP API (docs/HTTP-API.md): `create_app` and thin routes.

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
import functools
import logging
import os
import re
import stat
import urllib.parse

import flask
import prometheus_client
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotAcceptable, NotFound

from common import cut as cutting
from common import flask_stats, layout, probe
from common.segments import (
    get_best_segments,
    let_others_run,
    list_segments,
    parse_hour,
    parse_segment_path,
    validate_name_part,
)
from common.stats import timed
from restreamer import cutlimits, editor, files, hls, params

logger = logging.getLogger(__name__)

# Segments are named by their content's hash: a URL's bytes never change, so
# clients and caches may keep them as long as they like.
SEGMENT_MAX_AGE = 365 * 24 * 3600  # seconds

# The longest range a playlist may cover: a whole multi-day charity broadcast,
# with margin. Longer asks are refused rather than scanning (and listing)
# weeks of segments while the hub waits.
MAX_RANGE = datetime.timedelta(days=8)
# How far past "now" a live playlist looks for segments: broadcast times come
# from the origin's clock, which may run ahead of ours.
LIVE_LOOKAHEAD = datetime.timedelta(hours=1)
# How long after a range's end its last segment may still arrive: a segment is
# written once fully downloaded, so it appears its duration plus its download
# time after it starts; a minute covers slow downloads of 2-10 s segments.
SETTLE_TIME = datetime.timedelta(seconds=60)
VOD_PLAYLIST_MAX_AGE = 60  # seconds
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
# Segments whose sizes are read to measure a master playlist's bandwidth.
BANDWIDTH_SAMPLE = 1000
# Playlist entries formatted between two yields to other requests: about 2 ms
# of CPU (a day's 43,200 in 25 ms, measured by bench/best_segments.py).
FORMAT_SLICE = 4096  # segments
# Whole media playlists kept (most recent first), of at most a day of 2 s
# segments each, about 6 MB: longer ones are formatted again when asked for.
PLAYLIST_CACHE_SIZE = 8
PLAYLIST_CACHE_MAX_SEGMENTS = 50_000
SEGMENT_CONTENT_TYPES = {"ts": "video/mp2t", "mp4": "video/mp4"}

# CORS: the API is public and read-only, so any origin may read it. Range is
# what a browser player sends for segments; the exposed headers are what it
# reads back. Access-Control-Allow-Methods is each route's own methods.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
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
        # (segments, entries, ended, body), most recently used first
        self._playlists = []
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
        # Walk down from the (real) base: only a symlink can lead out, so only
        # symlinks are resolved. A part that does not exist ends the walk:
        # nothing below it can be opened.
        path = self.base_dir
        for part in parts:
            path = os.path.join(path, part)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                break
            if stat.S_ISLNK(mode) and not self.inside(os.path.realpath(path)):
                raise Forbidden(f"{'/'.join(parts)} is outside the store")
        return os.path.join(self.base_dir, *parts)

    def metric_labels(self, values):
        """Route arguments as metric labels: `channel` and `quality` as they are
        when the store has them, `other` when not (see `flask_stats.RequestStats`).

        So label values are bounded by what is recorded, not by what clients
        ask for: a flood of random names adds no series.
        """
        labels = {}
        path = self.base_dir
        for arg in ("channel", "quality"):
            if arg not in values:
                continue
            value = values[arg]
            if path is not None and _is_plain_part(value):
                path = os.path.join(path, value)
                if os.path.isdir(path):
                    labels[arg] = value
                    continue
            path = None  # no quality of an unknown channel is known either
            labels[arg] = flask_stats.OTHER
        return dict(values, **labels)

    def inside(self, real_path):
        """True if a resolved path is in the store (and not the store itself)."""
        return real_path.startswith(self.base_dir + os.sep)

    def first_hour(self, channel, quality):
        """The start of the earliest hour directory of a quality, or None."""
        path = self.path(channel, quality)
        try:
            names = os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        hours = []
        for name in names:
            try:
                hours.append(_parse_hour(name))
            except ValueError:
                continue
        return min(hours, default=None)

    def size(self, segment):
        """A segment file's size in bytes, or None if it cannot be read (gone)."""
        try:
            return os.stat(segment.path).st_size
        except OSError:
            return None

    def describe(self, segment):
        """A segment's `probe.Description` (resolution, codecs, frame rate), from
        ffprobe; all None if it cannot tell. Cached by path (which names the bytes)."""
        return probe.describe(segment.path)

    def layout(self, segment):
        """Where a segment's init section ends (`common.layout`), or None if the
        file has none to find (logged) or is gone. Cached by path: the name
        carries the hash, so a path's bytes never change."""
        try:
            return layout.cached_layout(segment.path, segment.container)
        except (OSError, layout.BadLayout) as e:
            logger.warning("Leaving %s out of playlists: %s", segment.path, e)
            return None

    def media_playlist_body(self, segments, ended):
        """A media playlist (a list of bytes), reusing recent work for the same segments.

        While a range's hours are unchanged, get_best_segments hands back the
        very same SegmentInfo objects, so comparing lists costs little
        (identity first) next to formatting them. A playlist asked for again
        (several editors on one range) is reused whole; a live playlist that
        only grew since (a player's reload) formats only its new segments.
        Anything else is formatted afresh, a slice at a time.
        """
        # A trailing hole writes nothing, and in a live range it is only the
        # part not recorded yet: leave it out, so the rest can be continued.
        core = segments[:-1] if segments and segments[-1] is None else segments
        entries = None
        for i, (cached_core, cached_entries, cached_ended, body) in enumerate(self._playlists):
            n = len(cached_core)
            if cached_core == core:
                if cached_ended == ended:
                    self._playlists.insert(0, self._playlists.pop(i))
                    return body
                entries = cached_entries
                break
            if n < len(core) and not ended and core[:n] == cached_core:
                entries = hls.format_entries(
                    core[n:], _segment_uri, layout=self.layout, before=cached_entries
                )
                break
        if entries is None:
            entries = hls.Entries()
            # A slice at a time, letting other requests run between slices.
            for i in range(0, len(core), FORMAT_SLICE):
                if i:
                    let_others_run()
                entries = hls.format_entries(
                    core[i : i + FORMAT_SLICE], _segment_uri, layout=self.layout, before=entries
                )
        body = hls.assemble(entries, ended=ended)
        if len(core) <= PLAYLIST_CACHE_MAX_SEGMENTS:
            self._playlists.insert(0, (core, entries, ended, body))
            del self._playlists[PLAYLIST_CACHE_SIZE:]
        return body

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
                if not entry.is_symlink() or self.inside(os.path.realpath(entry.path)):
                    names.append(entry.name)
        return sorted(names)


def _is_plain_part(value):
    try:
        validate_name_part(value, "part")
    except ValueError:
        return False
    return True


def check_part(value, what):
    """One path part from a URL: 403 if it starts with `.`, 400 if otherwise unusable."""
    if value.startswith("."):
        raise Forbidden(f"bad {what} {value!r}: starts with '.'")
    try:
        validate_name_part(value, what)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return value


# Parsing names and hours is a good part of serving a segment; players ask
# for the same few over and over. Only successes are cached.
_parse_name = functools.lru_cache(maxsize=4096)(parse_segment_path)
_parse_hour = functools.lru_cache(maxsize=1024)(parse_hour)


def check_segment_name(name):
    """A segment's file name → its `SegmentInfo` (no start time); 400 if it is not one."""
    try:
        return _parse_name(name)
    except ValueError as e:
        raise BadRequest(str(e)) from None


def check_hour(hour):
    try:
        _parse_hour(hour)
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


def list_hour_names(channel, quality):
    """`GET /files/<channel>/<quality>`: the hours that have a directory, oldest first.

    Directories whose names are not hours are left out.
    """
    hours = []
    for name in store().subdirectories(store().directory(channel, quality)):
        try:
            _parse_hour(name)
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
    try:
        content_type = SEGMENT_CONTENT_TYPES[info.container]
        response = files.file_response(path, content_type, etag=info.hash, max_age=SEGMENT_MAX_AGE)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"no segment {channel}/{quality}/{hour}/{name}") from None
    response.cache_control.immutable = True
    return response


# --- playlists --------------------------------------------------------------


def _resolve_range(start, end, earliest):
    """The range a playlist covers, its scan end, and whether it can still grow.

    `start` defaults to `earliest` (the first recorded hour); with no `end`
    the range runs on into the future: a live playlist. Refuses a live range
    longer than MAX_RANGE, or starting past the lookahead (400, not the scan's
    "end before start").
    """
    now = store().now()
    if start is None:
        start = earliest if earliest is not None else now
    if end is None:
        if start > now + LIVE_LOOKAHEAD:
            raise BadRequest(
                f"start {params.format_time(start)} is more than"
                f" {params.format_span(LIVE_LOOKAHEAD)} ahead of now ({params.format_time(now)}):"
                " nothing can be recorded there yet"
            )
        if now - start > MAX_RANGE:
            raise BadRequest(
                f"range from {params.format_time(start)} to now is longer than"
                f" {params.format_span(MAX_RANGE)}:"
                " give a later start or an end"
            )
        return start, None, now + LIVE_LOOKAHEAD
    return start, end, end


def _is_ended(end, segments):
    """True when nothing will ever be added to [start, end): the playlist is VOD.

    The range must be over, and either its last segment has arrived (the list
    does not end in a hole) or SETTLE_TIME has passed for late segments.
    """
    if end is None:
        return False
    now = store().now()
    if now < end:
        return False
    return bool(segments and segments[-1] is not None) or now >= end + SETTLE_TIME


def _directory_uri(path):
    """The URI of an hour directory `BASE/<channel>/<quality>/<hour>`, relative to
    `/playlist/<channel>/<quality>.m3u8`."""
    parts = (urllib.parse.quote(part, safe="") for part in path.rsplit("/", 3)[1:])
    return f"../../segments/{'/'.join(parts)}/"


# A segment's URI: its directory's, and its name (which `common.segments`
# parsed, so it is made of letters, digits and `._:-` only).
_segment_uri = hls.DirectoryURIs(_directory_uri)


def _playlist_response(body, live):
    response = flask.Response(body, content_type=PLAYLIST_CONTENT_TYPE)
    # A live playlist changes with every segment; a finished one only when the
    # backfiller fills a hole.
    response.headers["Cache-Control"] = "no-cache" if live else f"max-age={VOD_PLAYLIST_MAX_AGE}"
    return response


def _range_text(start, end):
    return f"{params.format_time(start)} to {params.format_time(end) if end else 'now'}"


def media_playlist(channel, quality):
    """`GET /playlist/<channel>/<quality>.m3u8?start=&end=`: a media playlist.

    Both times optional: no `start` is the first recorded hour, no `end` is a
    live playlist that grows with the recording. An ended range with nothing
    in it is a 404 (an empty VOD playlist is no use to a player).
    """
    start, end = params.time_range(flask.request.args, start_required=False, max_range=MAX_RANGE)
    s = store()
    s.directory(channel, quality)
    start, end, scan_end = _resolve_range(start, end, s.first_hour(channel, quality))
    segments = s.best_segments(channel, quality, start, scan_end)
    ended = _is_ended(end, segments)
    if ended and not any(segments):
        raise NotFound(f"nothing recorded for {channel}/{quality} from {_range_text(start, end)}")
    return _playlist_response(s.media_playlist_body(segments, ended), live=not ended)


def master_playlist(channel):
    """`GET /playlist/<channel>.m3u8?start=&end=`: one variant per quality with content.

    Each variant's URI carries the resolved start (and end), so that every
    quality plays the same range even when no start was given. BANDWIDTH is
    the peak segment bit rate in range (over up to BANDWIDTH_SAMPLE segments
    spread evenly across it); RESOLUTION, FRAME-RATE and CODECS come from
    one segment per quality (ffprobe, and for fMP4 the init section's codec
    configuration, so HEVC and AV1 are named exactly), when it can tell.
    """
    start, end = params.time_range(flask.request.args, start_required=False, max_range=MAX_RANGE)
    s = store()
    qualities = s.subdirectories(s.directory(channel))
    earliest = [s.first_hour(channel, quality) for quality in qualities]
    earliest = min((e for e in earliest if e is not None), default=None)
    start, end, scan_end = _resolve_range(start, end, earliest)
    query = {"start": params.format_time(start)}
    if end is not None:
        query["end"] = params.format_time(end)
    variants = []
    for quality in qualities:
        segments = [x for x in s.best_segments(channel, quality, start, scan_end) if x is not None]
        if not segments:
            continue
        # Every segment's size for a long range is a stat per segment (a week
        # of 2 s segments is 300,000): measure an even sample instead.
        step = max(1, len(segments) // BANDWIDTH_SAMPLE)
        peak, average = hls.bandwidths(segments[::step], s.size)
        facts = s.describe(next((x for x in segments if not x.is_partial), segments[0]))
        uri = "/".join(urllib.parse.quote(p, safe="") for p in (channel, quality))
        variants.append(
            hls.Variant(
                quality=quality,
                uri=f"{uri}.m3u8?{urllib.parse.urlencode(query)}",
                bandwidth=peak,
                average_bandwidth=average,
                resolution=facts.resolution,
                codecs=facts.codecs,
                frame_rate=facts.frame_rate and facts.frame_rate[0] / facts.frame_rate[1],
            )
        )
    if not variants:
        raise NotFound(f"nothing recorded for {channel} from {_range_text(start, end)}")
    variants.sort(key=lambda v: v.bandwidth, reverse=True)
    return _playlist_response(hls.master_playlist(variants), live=end is None)


# --- cuts -------------------------------------------------------------------


# What each cut route's file is, by its extension.
CUT_MIMETYPES = {"ts": "video/mp2t", "mp4": "video/mp4"}


def cut(channel, quality):
    """`GET /cut/<channel>/<quality>.ts?start=&end=&allow_holes=&type=`: an exact cut.

    The range [start, end) as one MPEG-TS file, streamed as it is made
    (`common.cut`): `type=fast` (default) re-encodes only the ends, `full`
    everything. 400 for bad parameters; 406 if the range has holes (unless
    `allow_holes=true`, which leaves them out) or nothing at all, or if its
    video cannot go in the container (AV1 in MPEG-TS). A client that goes
    away closes the cut, which kills its ffmpegs. Bounded by `cutlimits`:
    503/429 with Retry-After when the node or the client runs as many cuts
    as allowed, 400 for a `type=full` cut that is too long, and a client
    that stops reading loses its cut. The status waits for the first bytes;
    an ffmpeg failing after them can only cut the response short.
    """
    return _cut(channel, quality, "ts")


def cut_mp4(channel, quality):
    """`GET /cut/<channel>/<quality>.mp4?...`: `cut`, as a fragmented MP4 (any source)."""
    return _cut(channel, quality, "mp4")


def _cut(channel, quality, container):
    args = flask.request.args
    start, end = params.time_range(args, end_required=True, max_range=MAX_RANGE)
    allow_holes = params.get_bool(args, "allow_holes")
    type = args.get("type") or "fast"
    if type not in cutting.TYPES:
        raise BadRequest(f"bad type {type!r}: expected one of {', '.join(cutting.TYPES)}")
    limits = flask.current_app.extensions["cut_limits"]
    limits.check_length(type, start, end)
    s = store()
    s.directory(channel, quality)
    segments = s.best_segments(channel, quality, start, end)
    client = flask.request.remote_addr or "unknown"
    limits.acquire(client)
    try:
        chunks = cutting.cut(
            segments,
            start,
            end,
            type=type,
            allow_holes=allow_holes,
            registry=s.registry,
            container=container,
        )
        # The first bytes come once the segments are probed and the first piece
        # made: waiting for them turns a failure there into a status (406 for
        # a range with no frame in it) instead of a cut-short 200.
        first = next(chunks, b"")
    except cutting.CutError as e:
        limits.release(client)
        raise NotAcceptable(str(e)) from None
    except ValueError as e:
        limits.release(client)
        raise BadRequest(str(e)) from None
    except BaseException:
        limits.release(client)
        raise
    body, close = limits.stream(client, first, chunks)
    response = flask.Response(body, mimetype=CUT_MIMETYPES[container])
    response.call_on_close(close)
    name = f"{channel}-{quality}-{params.format_time(start)}.{container}"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    return response


# (rule, view function, options): every route of the API. The endpoint name is
# the function's name, which also names its metrics (`http_request_latency_<name>`):
# so no name has a unit word (`hours`, `days`, `bytes`...) as a part of it,
# which Prometheus' conventions would read as the metric's unit.
ROUTES = [
    ("/files", list_channels, {}),
    ("/files/<channel>", list_qualities, {}),
    ("/files/<channel>/<quality>", list_hour_names, {}),
    ("/files/<channel>/<quality>/<hour>", list_segment_names, {}),
    ("/segments/<channel>/<quality>/<hour>/<name>", segment, {}),
    ("/playlist/<channel>.m3u8", master_playlist, {}),
    ("/playlist/<channel>/<quality>.m3u8", media_playlist, {}),
    ("/cut/<channel>/<quality>.ts", cut, {}),
    ("/cut/<channel>/<quality>.mp4", cut_mp4, {}),
]


# --- the app ----------------------------------------------------------------


# Methods in the order Access-Control-Allow-Methods lists them.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods():
    """The methods the requested path answers (GET, HEAD, OPTIONS if no route)."""
    request = flask.request
    if request.url_rule is not None:
        methods = request.url_rule.methods
    else:  # a 405 (or a 404): ask the map what the path answers
        adapter = flask.current_app.url_map.bind_to_environ(request.environ)
        methods = set(adapter.allowed_methods()) or {"GET", "HEAD", "OPTIONS"}
    return ", ".join(m for m in METHOD_ORDER if m in methods)


def add_cors_headers(response):
    if "Access-Control-Allow-Origin" not in response.headers:
        response.headers.extend(CORS_HEADERS)
        response.headers["Access-Control-Allow-Methods"] = _allowed_methods()
    requested = flask.request.headers.get("Access-Control-Request-Headers")
    if requested:
        response.headers["Access-Control-Allow-Headers"] = requested
    return response


def check_query_encoding():
    """Refuse a query string that is not UTF-8 (werkzeug would raise decoding it)."""
    try:
        flask.request.query_string.decode()
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None


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


def create_app(base_dir, registry=None, *, now=utc_now, cut_limits=None):
    """The restreamer's WSGI app, serving the store at `base_dir`.

    `registry` receives the app's metrics and is served at `/metrics`; a fresh
    one is made when none is given (tests), the service passes the global one
    so log counts show too. `now()` gives the current time as an aware
    datetime; tests fix it to make live and finished ranges deterministic.
    `cut_limits` (a `cutlimits.CutLimits`) bounds `/cut`; by default one cut
    per core, `cutlimits`' other defaults.
    """
    if registry is None:
        registry = prometheus_client.CollectorRegistry()
    app = flask.Flask(__name__, static_folder=None)
    app.json.sort_keys = False
    app.extensions["restreamer"] = Store(base_dir, registry, now)
    app.extensions["cut_limits"] = cut_limits or cutlimits.CutLimits(registry)
    for rule, view, options in ROUTES:
        app.add_url_rule(rule, view_func=view, **options)
    app.register_blueprint(editor.blueprint)
    # after_request hooks run last-registered first: this one must see the
    # response after flask_stats has added its close callback.
    app.after_request(files.link_close)
    flask_stats.install(app, registry, known=app.extensions["restreamer"].metric_labels)
    app.before_request(check_query_encoding)
    app.after_request(add_cors_headers)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, server_error)
    return app
