"""A read-only HTTP server for one directory's files: run-local's uploaded videos.

    python -m devtools.fileserver --host 127.0.0.1 --port 8004 DIRECTORY

What nginx's `/uploads/` does in Docker, for run-local: GET and HEAD of a file
directly in DIRECTORY (no subdirectories), with Range (so players can seek).
Refused with 404: directory listings, hidden names (the cutter spools its cuts
as dot files there before linking them into place), symlinks and anything that
is not a regular file. Built on the standard library's http.server (here only
to serve files, never to list or run anything); prints
`fileserver: serving URL` once listening.
"""

import argparse
import http.server
import os
import re
import signal
import sys
import threading
import urllib.parse

CHUNK = 64 * 1024
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves files of `server.directory`; everything else is 404."""

    def do_HEAD(self):
        self.serve(body=False)

    def do_GET(self):
        self.serve(body=True)

    def serve(self, body):
        """Answer a GET (`body`) or HEAD: the file, a range of it, or 404/416."""
        path = self.resolve()
        if path is None:
            return self.send_error(404, "not found")
        try:
            with open(path, "rb", opener=_no_follow) as f:
                size = os.fstat(f.fileno()).st_size
                start, end = 0, size - 1
                match = _RANGE_RE.fullmatch(self.headers.get("Range", ""))
                if match and (match[1] or match[2]):
                    if match[1]:
                        start, end = int(match[1]), int(match[2] or size - 1)
                    else:
                        start = max(0, size - int(match[2]))
                    end = min(end, size - 1)
                    if start > end:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", _content_type(path))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if body:
                    f.seek(start)
                    left = end - start + 1
                    while left > 0:
                        data = f.read(min(CHUNK, left))
                        if not data:
                            break
                        self.wfile.write(data)
                        left -= len(data)
        except OSError:
            self.send_error(404, "not found")

    def resolve(self):
        """The file a request names, or None: one plain name directly in the directory."""
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if not name.startswith("/"):
            return None
        name = name[1:]
        if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
            return None
        path = os.path.join(self.server.directory, name)
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        return path

    def log_message(self, format, *args):
        pass


def _no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def _content_type(path):
    if path.endswith(".ts"):
        return "video/mp2t"
    if path.endswith(".mp4"):
        return "video/mp4"
    return "application/octet-stream"


def serve(directory, host="127.0.0.1", port=0):
    """Start serving `directory` in a thread; returns the server (`.server_port`)."""
    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.directory = os.path.abspath(directory)
    # A short poll interval, so shutdown() returns at once.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fileserver")
    thread.daemon = True
    thread.start()
    return server


def main(argv=None):
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fileserver",
        description="Serve one directory's files read-only over HTTP (no listings).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 = any (default: 0)")
    parser.add_argument("directory")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        server = serve(args.directory, args.host, args.port)
    except OSError as e:
        print(f"fileserver: {e}", file=sys.stderr)
        return 1
    print(f"fileserver: serving http://{args.host}:{server.server_port}/", flush=True)
    stopping.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
