"""Serving immutable files fast: a response body the server can `sendfile`.

A segment is served as a `FileBody`: an iterable over one byte range of an
open file. Any WSGI server can iterate it (in `CHUNK_SIZE` reads, never the
whole file in memory); the restreamer's own server (`main.SendfileHandler`)
sees `sendfile_args()` and hands the range to the kernel with `os.sendfile`,
which measured several times faster than copying through Python (see
bench/restreamer.py).

Werkzeug's `send_file` returns its body with `direct_passthrough`, which skips
the response's `call_on_close` callbacks (request metrics would never be
recorded). `file_response` keeps werkzeug's conditional and Range logic but
its body runs those callbacks when the server closes it (`link_close`, which
also makes werkzeug's own file responses run them).

How it fails: a file that vanishes between the route's check and `open` is a
FileNotFoundError for the route to turn into a 404; a client that goes away
mid-body makes the server close the body, which closes the file.
"""

import os

import flask
import werkzeug.http

# Read size when the body is iterated rather than sent with sendfile: large
# enough that per-chunk overhead is small, small enough for many clients.
CHUNK_SIZE = 256 * 1024  # bytes


class FileBody:
    """`length` bytes of `file` from `offset`, as a WSGI response body."""

    def __init__(self, file, offset, length):
        self.file = file
        self.offset = offset
        self.length = length
        self.closed = False
        self.after_close = None

    def __iter__(self):
        self.file.seek(self.offset)
        left = self.length
        while left > 0:
            chunk = self.file.read(min(CHUNK_SIZE, left))
            if not chunk:
                # The file shrank under us (it never should: segments are
                # immutable). End the body; the client sees a short response.
                return
            left -= len(chunk)
            yield chunk

    def sendfile_args(self):
        """(fd, offset, length) for `os.sendfile`."""
        return self.file.fileno(), self.offset, self.length

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.file.close()
        if self.after_close is not None:
            self.after_close()


def file_response(path, mimetype, etag=None, max_age=None):
    """A conditional, Range-aware response streaming the file at `path`.

    Raises FileNotFoundError (or another OSError) if it cannot be opened.
    """
    file = open(path, "rb")
    try:
        stat = os.fstat(file.fileno())
        body = FileBody(file, 0, stat.st_size)
        response = flask.Response(body, mimetype=mimetype, direct_passthrough=True)
        response.content_length = stat.st_size
        response.last_modified = stat.st_mtime
        if etag is not None:
            response.set_etag(etag)
        if max_age is not None:
            response.cache_control.max_age = max_age
            response.cache_control.public = True
        response.make_conditional(
            _ranges_we_honour(flask.request.environ),
            accept_ranges=True,
            complete_length=stat.st_size,
        )
    except BaseException:
        file.close()
        raise
    if response.status_code == 206:
        # make_conditional wrapped the body in its own range iterator; keep
        # ours (which the server can sendfile) over the same range.
        body.offset = response.content_range.start
        body.length = response.content_range.stop - response.content_range.start
        response.response = body
    return response


def _ranges_we_honour(environ):
    """The request's environ, without a `Range` header this server ignores.

    RFC 9110 (section 14.2) lets a server ignore a Range header, and has it
    ignore one in a unit it does not know; 416 is only for a well-formed range
    that misses the file. So a malformed one (`bytes=5-1`, `bytes=abc`), one in
    another unit, and several ranges at once (which would need a multipart
    body) are ignored: the whole file, 200. Werkzeug would answer 416.
    """
    header = environ.get("HTTP_RANGE")
    if header is None:
        return environ
    ranges = werkzeug.http.parse_range_header(header)
    if ranges is not None and ranges.units == "bytes" and len(ranges.ranges) == 1:
        return environ
    environ = dict(environ)
    del environ["HTTP_RANGE"]
    return environ


def link_close(response):
    """An `after_request` hook, to run after every other: make a FileBody close the response.

    A streamed body goes to the server as is (direct passthrough), so only its
    own `close` is called; this makes that also run the response's close
    callbacks (request metrics). HEAD and 304 responses have no body and are
    closed by werkzeug itself, so they are left alone.
    """
    body = response.response
    if (
        isinstance(body, FileBody)
        and response.direct_passthrough
        and response.status_code in (200, 206)
        and flask.request.method != "HEAD"
    ):
        body.after_close = response.close
    elif response.direct_passthrough and not isinstance(body, FileBody):
        # Werkzeug's own file bodies (`send_from_directory`: the editor's
        # page and scripts) would skip the callbacks too, leaving the
        # in-flight gauge up and the latency unrecorded: let werkzeug wrap
        # them, which runs the callbacks on close. They are small files.
        response.direct_passthrough = False
    return response
