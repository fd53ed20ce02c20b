"""A fault-injecting HLS origin for the downloader's tests and benchmark.

Serves synthetic live playlists, written by the test step by step, whose
segments are real MPEG-TS bytes; and misbehaves on request, the way real
origins and CDNs do: status codes, connection resets, bodies cut short with or
without a Content-Length, slow and stalled bodies, expiring playlist URLs,
channels going offline, playlists repeating or going backwards.

It is a stdlib ThreadingHTTPServer on 127.0.0.1 in a daemon thread, speaking
HTTP/1.0 (one request per connection), so it answers while the test's own
thread blocks in a download, whether or not gevent has patched the process.

    origin = Origin([segment_bytes, ...]).start()
    stream = origin.add_channel("ch", ["source", "480p"])["source"]
    stream.publish(3)                        # three 2 s segments go live
    stream.fail(sequence, ("status", 500))   # its next request gets a 500
    origin.master_url("ch")

fMP4: `stream.set_init("init-0.mp4", init_bytes)` makes the segments published
after it fMP4 (`N.mp4`) behind that EXT-X-MAP, repeated at the top of every
playlist as real origins do; a later `set_init` is a mid-stream change.
`stream.byteranges = True` lists every segment as an EXT-X-BYTERANGE of one
resource (`all.ts`/`all.mp4`, init sections first), answered with 206.
"""

import datetime
import http.server
import socket
import struct
import sys
import threading
import time
import urllib.parse

START = datetime.datetime(2026, 11, 28, 13, 59, 50, tzinfo=datetime.UTC)


def format_pdt(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Entry:
    def __init__(self, sequence, pdt, duration, data, title, tags, init=None):
        self.init = init  # the init section's name (fMP4), or None (MPEG-TS)
        self.sequence = sequence
        self.pdt = pdt
        self.duration = duration
        self.data = data
        self.title = title
        self.tags = tags  # raw lines put before the entry
        self.published = time.time()


class Stream:
    """One quality's live media playlist."""

    def __init__(self, origin, channel, quality, bandwidth, start):
        self.origin = origin
        self.channel = channel
        self.quality = quality
        self.bandwidth = bandwidth
        self.entries = []
        self.window = 6  # entries listed at once
        self.next_sequence = 0
        self.next_pdt = start
        self.with_pdt = True
        self.ended = False
        self.extra_header = []  # raw lines after the header (e.g. EXT-X-MAP)
        self.segment_faults = {}  # sequence -> [action, ...] consumed per request
        self.playlist_faults = []  # actions consumed per playlist request
        self.expire_after = None  # 403 once one token was used this many times
        self.token_uses = {}
        self.frozen = None  # a playlist text served instead of the live one
        self.inits = {}  # init section name -> bytes
        self.current_init = None  # the init section of segments published next
        self.init_faults = []  # actions consumed per init section request
        self.byteranges = False
        self.lock = threading.Lock()

    def set_init(self, name, data):
        with self.lock:
            self.inits[name] = data
            self.current_init = name

    def extension(self, entry):
        return "mp4" if entry.init else "ts"

    def resource(self):
        """With `byteranges`: the one resource and where each part lies in it.

        → (bytes, {init name: (offset, length)}, {sequence: (offset, length)})
        """
        with self.lock:
            parts, inits, segments, offset = [], {}, {}, 0
            for name, data in self.inits.items():
                inits[name] = (offset, len(data))
                parts.append(data)
                offset += len(data)
            for entry in self.entries:
                segments[entry.sequence] = (offset, len(entry.data))
                parts.append(entry.data)
                offset += len(entry.data)
        return b"".join(parts), inits, segments

    def publish(self, count=1, duration=2.0, title="live", tags=(), gap=0.0, data=None):
        """Add `count` segments; `gap` seconds of broadcast time are skipped first."""
        added = []
        with self.lock:
            self.next_pdt += datetime.timedelta(seconds=gap)
            for i in range(count):
                payload = data if data is not None else self.origin.data_for(self.next_sequence)
                entry = Entry(
                    self.next_sequence,
                    self.next_pdt,
                    duration,
                    payload,
                    title,
                    list(tags) if i == 0 else [],
                    self.current_init,
                )
                self.entries.append(entry)
                added.append(entry)
                self.next_sequence += 1
                self.next_pdt += datetime.timedelta(seconds=duration)
        return added

    def listed(self):
        with self.lock:
            return self.entries[-self.window :]

    def entry(self, sequence):
        with self.lock:
            for entry in self.entries:
                if entry.sequence == sequence:
                    return entry
        return None

    def fail(self, sequence, *actions):
        """Script the next requests of segment `sequence` (then it serves normally)."""
        with self.lock:
            self.segment_faults.setdefault(sequence, []).extend(actions)

    def render(self, entries=None):
        entries = self.listed() if entries is None else entries
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{max([2] + [round(e.duration) for e in entries])}",
            f"#EXT-X-MEDIA-SEQUENCE:{entries[0].sequence if entries else self.next_sequence}",
        ]
        lines += self.extra_header
        if self.byteranges:
            _, init_ranges, ranges = self.resource()
        current_init = None
        for entry in entries:
            lines += entry.tags
            if entry.init != current_init and entry.init is not None:
                if self.byteranges:
                    offset, length = init_ranges[entry.init]
                    lines.append(f'#EXT-X-MAP:URI="all.mp4",BYTERANGE="{length}@{offset}"')
                else:
                    lines.append(f'#EXT-X-MAP:URI="{entry.init}"')
            current_init = entry.init
            if self.with_pdt:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(entry.pdt)}")
            lines.append(f"#EXTINF:{entry.duration:.3f},{entry.title}")
            if self.byteranges:
                offset, length = ranges[entry.sequence]
                lines.append(f"#EXT-X-BYTERANGE:{length}@{offset}")
                lines.append(f"all.{self.extension(entry)}")
            else:
                lines.append(f"{entry.sequence}.{self.extension(entry)}")
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


class Channel:
    def __init__(self):
        self.streams = {}
        self.offline = False
        self.token = 0  # bumped by every master playlist fetch
        self.master_faults = []


class Origin:
    def __init__(self, segment_data, host="127.0.0.1"):
        self.segment_data = list(segment_data)
        self.host = host
        self.channels = {}
        self.log = []  # (path, status)
        self._server = None

    def data_for(self, sequence):
        return self.segment_data[sequence % len(self.segment_data)]

    def add_channel(self, name, qualities=("source",), start=START):
        channel = Channel()
        for i, quality in enumerate(qualities):
            channel.streams[quality] = Stream(self, name, quality, 6_000_000 // (i + 1), start)
        self.channels[name] = channel
        return channel.streams

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def master_url(self, channel):
        return f"{self.base_url}/{channel}/master.m3u8"

    def media_url(self, channel, quality, token=0):
        return f"{self.base_url}/{channel}/{quality}/index.m3u8?token={token}"

    def requests_for(self, fragment):
        return [status for path, status in self.log if fragment in path]

    def start(self):
        origin = self

        class Handler(_Handler):
            pass

        Handler.origin = origin
        self._server = _Server((self.host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections under a burst of
    # requests, and the client's SYN retry then adds a whole second.
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A client that gave up on a slow answer is expected here, not an error.
        if not isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    origin = None
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", content_type="text/plain", length=True):
        self.origin.log.append((self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self):
        """Close with a TCP RST, as a crashed server or a broken network does."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        channel = self.origin.channels.get(parts[0])
        if channel is None:
            return self._send(404, b"no such channel\n")
        if parts[1:] == ["master.m3u8"]:
            return self._master(channel)
        if len(parts) != 3 or parts[1] not in channel.streams:
            return self._send(404, b"not found\n")
        stream = channel.streams[parts[1]]
        if parts[2] == "index.m3u8":
            query = urllib.parse.parse_qs(url.query)
            return self._media(channel, stream, query.get("token", ["0"])[0])
        name, _, extension = parts[2].partition(".")
        if extension in ("ts", "mp4") and name.isdigit():
            return self._segment(stream, int(name))
        if parts[2] in ("all.ts", "all.mp4") and stream.byteranges:
            return self._range(stream)
        if parts[2] in stream.inits:
            with stream.lock:
                action = stream.init_faults.pop(0) if stream.init_faults else None
            if action is not None:
                return self._act(action, stream.inits[parts[2]])
            return self._send(200, stream.inits[parts[2]], "video/mp4")
        return self._send(404, b"not found\n")

    def _range(self, stream):
        """A byte range of the stream's one resource (RFC 9110 §14: `bytes=a-b` → 206)."""
        data, _, _ = stream.resource()
        wanted = self.headers.get("Range", "")
        if not wanted.startswith("bytes=") or "-" not in wanted:
            return self._send(200, data, "video/mp4")
        first, last = wanted[len("bytes=") :].split("-", 1)
        first, last = int(first), min(int(last), len(data) - 1)
        body = data[first : last + 1]
        self.origin.log.append((self.path, 206))
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _master(self, channel):
        if channel.master_faults:
            return self._act(channel.master_faults.pop(0), b"")
        if channel.offline:
            return self._send(404, b"channel offline\n")
        channel.token += 1
        lines = ["#EXTM3U"]
        for quality, stream in channel.streams.items():
            height = 720 if quality == "source" else int(quality.rstrip("p"))
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={stream.bandwidth},"
                f'RESOLUTION={height * 16 // 9}x{height},CODECS="avc1.4d401f,mp4a.40.2"'
            )
            lines.append(f"{quality}/index.m3u8?token={channel.token}")
        return self._send(200, ("\n".join(lines) + "\n").encode(), "application/vnd.apple.mpegurl")

    def _media(self, channel, stream, token):
        with stream.lock:
            stream.token_uses[token] = stream.token_uses.get(token, 0) + 1
            uses = stream.token_uses[token]
            action = stream.playlist_faults.pop(0) if stream.playlist_faults else None
        if channel.offline:
            return self._send(404, b"offline\n")
        if stream.expire_after is not None and uses > stream.expire_after:
            return self._send(403, b"token expired\n")
        body = (stream.frozen or stream.render()).encode()
        if action is not None:
            return self._act(action, body)
        return self._send(200, body, "application/vnd.apple.mpegurl")

    def _segment(self, stream, sequence):
        entry = stream.entry(sequence)
        if entry is None:
            return self._send(404, b"no such segment\n")
        with stream.lock:
            faults = stream.segment_faults.get(sequence)
            action = faults.pop(0) if faults else None
        if action is None:
            return self._send(200, entry.data, "video/mp2t")
        return self._act(action, entry.data)

    def _act(self, action, body):
        """Misbehave as `action` says, with `body` as the real answer."""
        kind = action[0]
        if kind == "ok":
            return self._send(200, body, "video/mp2t")
        if kind == "status":  # ("status", 500)
            return self._send(action[1], b"error\n")
        if kind == "body":  # ("body", bytes): serve these bytes instead
            return self._send(200, action[1], "application/vnd.apple.mpegurl")
        self.origin.log.append((self.path, kind))
        if kind == "reset":  # ("reset", n): send n bytes of a full-length body, then RST
            self._headers(len(body))
            self.wfile.write(body[: action[1]])
            return self._reset()
        if kind == "truncate":  # ("truncate", n): full Content-Length, n bytes, clean close
            self._headers(len(body))
            self.wfile.write(body[: action[1]])
            self.close_connection = True
            return
        if kind == "slow":  # ("slow", seconds): wait before answering at all
            time.sleep(action[1])
            return self._send(200, body, "video/mp2t")
        if kind == "stall_close":  # ("stall_close", n, seconds): no length, n bytes, stall, close
            self._headers(None)
            self.wfile.write(body[: action[1]])
            self.wfile.flush()
            time.sleep(action[2])
            self.close_connection = True
            return
        if kind == "trickle":  # ("trickle", seconds): dribble bytes for that long, then RST
            self._headers(len(body))
            deadline = time.monotonic() + action[1]
            sent = 0
            while time.monotonic() < deadline and sent < len(body) - 1:
                self.wfile.write(body[sent : sent + 188])
                self.wfile.flush()
                sent += 188
                time.sleep(0.02)
            return self._reset()
        raise ValueError(f"unknown action {action!r}")

    def _headers(self, length):
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
