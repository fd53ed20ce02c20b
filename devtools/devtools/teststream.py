"""The built-in test stream: a live HLS origin made by ffmpeg, served over HTTP.

    python -m devtools.teststream --host 127.0.0.1 --port 8080 --work-dir /tmp/ts \\
        [--channel test] [--qualities source,240p] [--container fmp4 --codec hevc]

One ffmpeg encodes a moving test pattern (with a burnt-in UTC clock when ffmpeg
has `drawtext` and a font can be found, else without) and a tone that beeps
every second, in real time, into one HLS rendition per quality: H.264 with
B-frames and 2 s closed GOPs, AAC, 2 s MPEG-TS segments, a sliding window of
playlist entries, old segments deleted. With `--container fmp4` the segments are
fragmented MP4 (`EXT-X-MAP` init section + `.m4s` segments, as Twitch's enhanced
broadcasting serves them), in H.264, HEVC (`--codec hevc`) or AV1 (`--codec av1`).
An HTTP server serves

    http://HOST:PORT/CHANNEL/master.m3u8            one entry per quality
    http://HOST:PORT/CHANNEL/QUALITY/index.m3u8     the live media playlist
    http://HOST:PORT/CHANNEL/QUALITY/segNNNNNN.ts   the segments (.m4s for fMP4,
    http://HOST:PORT/CHANNEL/QUALITY/init_N.mp4     with this init section)

and the command prints `teststream: serving <master URL>` once the playlists
exist. SIGTERM (or SIGINT) stops ffmpeg and the server; if ffmpeg dies by itself
the command exits non-zero.

Times: every segment carries `EXT-X-PROGRAM-DATE-TIME`. ffmpeg stamps the first
segment with the wall clock (microseconds, printed rounded to milliseconds) and
adds durations; the server shifts those by a constant so that segment N starts
at exactly `epoch + N * 2 s`, where `epoch` is the whole second the clock on the
picture counts from. So a frame's burnt-in clock *is* its broadcast time, a
clip cut at 13:50:07.000 starts on a frame reading 13:50:07.000, and the program
date times of consecutive segments differ by exactly their EXTINF durations.

Small by design (source 640x360, 30 fps): ffmpeg uses about 15 % of one core
for two qualities, so a whole node and its tests fit on 2 cores beside it.

`TestStream` does the same in-process (tests use `port=0` and read `.url`).
"""

import argparse
import datetime
import http.server
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

logger = logging.getLogger(__name__)

SOURCE_SIZE = (640, 360)
FRAME_RATE = 30
SEGMENT_SECONDS = 2
# Playlist window: 10 segments (20 s), like a Twitch live playlist's few dozen
# seconds. Segments stay on disk 5 segments longer than they stay listed, so a
# client that just read the playlist can still fetch everything in it.
LIST_SIZE = 10
DELETE_THRESHOLD = 5
# Video bitrate of the source quality; smaller qualities scale it by area.
SOURCE_VIDEO_BITRATE = 800_000
AUDIO_BITRATE = 64_000
# All renditions use one profile and level so the master playlist's CODECS is right.
CODECS = "avc1.64001e,mp4a.40.2"
CONTAINERS = ("ts", "fmp4")
# Video encoders per codec, all in Debian's ffmpeg: closed GOPs of exactly one
# segment, fast presets (x265 ultrafast and SVT-AV1 preset 12 keep 640x360 at
# 30 fps in real time on a fraction of a core). HEVC is tagged hvc1, as
# Twitch serves it. Only H.264 has a fixed level, so only its master
# playlist entry can say CODECS; the restreamer reads the real ones from the
# recorded init sections.
VIDEO_CODECS = {
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-level:v", "3.0",
             "-bf", "2", "-sc_threshold", "0"],
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
             "-x265-params", "log-level=error:open-gop=0:scenecut=0"],
    "av1": ["-c:v", "libsvtav1", "-preset", "12"],
}  # fmt: skip
# How long start() waits for ffmpeg's first playlists: a segment's length plus
# ffmpeg's start-up, with room for a loaded machine.
START_TIMEOUT = 20
STOP_TIMEOUT = 5
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
)

_QUALITY_RE = re.compile(r"(source|[1-9][0-9]{1,3}p)")
_SEGMENT_RE = re.compile(r"seg([0-9]{6,})\.(?:ts|m4s)")
# ffmpeg names each rendition's fMP4 init section after its index.
_INIT_RE = re.compile(r"init_[0-9]+\.mp4")
_PDT_PREFIX = "#EXT-X-PROGRAM-DATE-TIME:"


class TestStreamError(Exception):
    """ffmpeg could not start, died, or did not produce playlists in time."""


def quality_size(quality):
    """`source` → the source size; `240p` → 426x240 (16:9, even numbers)."""
    if not _QUALITY_RE.fullmatch(quality):
        raise ValueError(f"bad quality {quality!r}: expected 'source' or e.g. '240p'")
    if quality == "source":
        return SOURCE_SIZE
    height = int(quality[:-1])
    width = round(height * 16 / 9 / 2) * 2
    return width, height - height % 2


def find_font():
    """A font file for drawtext, or None."""
    if shutil.which("fc-match"):
        try:
            path = subprocess.run(
                ["fc-match", "-f", "%{file}", "monospace"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            path = ""
        if path.endswith((".ttf", ".otf")) and os.path.exists(path):
            return path
    for path in FONT_CANDIDATES:
        if os.path.exists(path):
            return path
    return None


def has_drawtext(ffmpeg="ffmpeg"):
    try:
        filters = subprocess.run(
            [ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(r"\sdrawtext\s", filters) is not None


def _filter_escape(value):
    """Escape a value for use inside a filtergraph option."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


def _format_pdt(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class TestStream:
    """A live HLS origin: ffmpeg plus an HTTP server. `start()`, `.url`, `stop()`."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        work_dir,
        host="127.0.0.1",
        port=0,
        channel="test",
        qualities=("source", "240p"),
        segment_seconds=SEGMENT_SECONDS,
        ffmpeg="ffmpeg",
        container="ts",
        codec="h264",
    ):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", channel):
            raise ValueError(f"bad channel {channel!r}: letters, digits, '_' and '-' only")
        if "source" not in qualities:
            raise ValueError("qualities must include 'source'")
        if container not in CONTAINERS:
            raise ValueError(
                f"bad container {container!r}: expected one of {', '.join(CONTAINERS)}"
            )
        if codec not in VIDEO_CODECS:
            raise ValueError(f"bad codec {codec!r}: expected one of {', '.join(VIDEO_CODECS)}")
        if container == "ts" and codec != "h264":
            raise ValueError("MPEG-TS test streams are H.264 only; use --container fmp4")
        self.container = container
        self.codec = codec
        self.sizes = {quality: quality_size(quality) for quality in qualities}
        self.work_dir = os.path.abspath(work_dir)
        self.host = host
        self.port = port
        self.channel = channel
        self.qualities = list(qualities)
        self.segment_seconds = segment_seconds
        self.ffmpeg = ffmpeg
        self.epoch = None  # datetime: broadcast time of segment 0, a whole second
        self.text = False  # whether the clock is drawn
        self._shifts = {}  # quality -> timedelta added to ffmpeg's program date times
        self._lock = threading.Lock()
        self._proc = None
        self._server = None
        self._thread = None

    # --- URLs -----------------------------------------------------------------

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}/{self.channel}"

    @property
    def url(self):
        """The master playlist's URL."""
        return f"{self.base_url}/master.m3u8"

    def media_url(self, quality):
        return f"{self.base_url}/{quality}/index.m3u8"

    def quality_dir(self, quality):
        return os.path.join(self.work_dir, self.channel, quality)

    # --- lifecycle ------------------------------------------------------------

    def start(self):
        """Start ffmpeg and the server; return once every playlist exists.

        Raises TestStreamError (after cleaning up) if ffmpeg fails to start or
        produces no playlist within START_TIMEOUT.
        """
        channel_dir = os.path.join(self.work_dir, self.channel)
        shutil.rmtree(channel_dir, ignore_errors=True)
        for quality in self.qualities:
            os.makedirs(self.quality_dir(quality))
        self.epoch = datetime.datetime.fromtimestamp(int(time.time()), datetime.UTC)
        command = self._command(channel_dir)
        self._stderr = open(os.path.join(channel_dir, ".ffmpeg.log"), "wb")
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        try:
            self._start_server()
            self._wait_for_playlists()
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, channel_dir):
        video = f"testsrc2=size={SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}:rate={FRAME_RATE}"
        font = find_font() if has_drawtext(self.ffmpeg) else None
        graph = "[0:v]"
        if font:
            self.text = True
            text_file = os.path.join(channel_dir, ".clock.txt")
            # pts-based clock: frame time + epoch, so the clock is the broadcast time.
            # `+0.5` rounds the milliseconds of frame times such as 0.3 (299.99999...).
            with open(text_file, "w") as f:
                f.write(
                    f"{self.channel}  %{{pts:gmtime:{int(self.epoch.timestamp())}:"
                    "%Y-%m-%d %H\\:%M\\:%S}.%{eif:mod(t*1000+0.5,1000):d:3} UTC"
                )
            graph += (
                f"drawtext=fontfile='{_filter_escape(font)}'"
                f":textfile='{_filter_escape(text_file)}'"
                ":fontsize=22:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4"
                ":x=8:y=h-th-12,"
            )
        else:
            logger.warning("teststream: no drawtext filter or font; the picture has no clock")
        n = len(self.qualities)
        graph += f"split={n}" + "".join(f"[s{i}]" for i in range(n))
        for i, quality in enumerate(self.qualities):
            width, height = self.sizes[quality]
            if (width, height) == SOURCE_SIZE:
                graph += f";[s{i}]null[v{i}]"
            else:
                graph += f";[s{i}]scale={width}:{height}[v{i}]"
        gop = FRAME_RATE * self.segment_seconds
        command = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-v", "warning",
            "-re", "-f", "lavfi", "-i", video,
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000",
            "-filter_complex", graph,
        ]  # fmt: skip
        for i in range(n):
            command += ["-map", f"[v{i}]"]
        for _ in range(n):
            command += ["-map", "1:a"]
        for i, quality in enumerate(self.qualities):
            command += [f"-b:v:{i}", str(self._video_bitrate(quality))]
        stream_map = " ".join(f"v:{i},a:{i},name:{q}" for i, q in enumerate(self.qualities))
        command += [
            *VIDEO_CODECS[self.codec],
            "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop),
            "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", str(AUDIO_BITRATE),
            "-f", "hls", "-hls_time", str(self.segment_seconds),
            "-hls_list_size", str(LIST_SIZE), "-hls_delete_threshold", str(DELETE_THRESHOLD),
            "-hls_flags", "delete_segments+program_date_time+temp_file+independent_segments",
            "-var_stream_map", stream_map,
        ]  # fmt: skip
        if self.container == "fmp4":
            command += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"]
        extension = "m4s" if self.container == "fmp4" else "ts"
        command += [
            "-hls_segment_filename", os.path.join(channel_dir, "%v", f"seg%06d.{extension}"),
            os.path.join(channel_dir, "%v", "index.m3u8"),
        ]  # fmt: skip
        return command

    def _video_bitrate(self, quality):
        width, height = self.sizes[quality]
        area = width * height / (SOURCE_SIZE[0] * SOURCE_SIZE[1])
        return max(100_000, int(SOURCE_VIDEO_BITRATE * area))

    def _bandwidth(self, quality):
        # Peak bandwidth with headroom for the MPEG-TS overhead, as encoders write it.
        return int((self._video_bitrate(quality) + AUDIO_BITRATE) * 1.2)

    def _start_server(self):
        stream = self

        class Handler(_Handler):
            teststream = stream

        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="teststream-http",
            daemon=True,
        )
        self._thread.start()

    def _wait_for_playlists(self):
        deadline = time.monotonic() + START_TIMEOUT
        waiting = set(self.qualities)
        while waiting:
            if self._proc.poll() is not None:
                raise TestStreamError(f"ffmpeg exited with {self._proc.returncode}: {self._log()}")
            if time.monotonic() > deadline:
                raise TestStreamError(f"no playlist after {START_TIMEOUT}s: {self._log()}")
            for quality in list(waiting):
                if self._learn_shift(quality):
                    waiting.discard(quality)
            time.sleep(0.05)

    def _log(self):
        try:
            with open(os.path.join(self.work_dir, self.channel, ".ffmpeg.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no log)"

    def _learn_shift(self, quality):
        """From the first playlist: the shift that puts segment N at epoch + N * length."""
        text = self._read_playlist(quality)
        if text is None:
            return False
        pdt = None
        for line in text.splitlines():
            if line.startswith(_PDT_PREFIX):
                pdt = _parse_ffmpeg_pdt(line[len(_PDT_PREFIX) :])
            elif (match := _SEGMENT_RE.fullmatch(line)) and pdt is not None:
                number = int(match[1])
                wanted = self.epoch + datetime.timedelta(seconds=number * self.segment_seconds)
                with self._lock:
                    self._shifts[quality] = wanted - pdt
                return True
        return False

    def _read_playlist(self, quality):
        try:
            with open(os.path.join(self.quality_dir(quality), "index.m3u8")) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def media_playlist(self, quality):
        """ffmpeg's playlist for `quality` with program date times on the epoch grid."""
        text = self._read_playlist(quality)
        if text is None:
            return None
        with self._lock:
            shift = self._shifts.get(quality)
        if shift is None:
            return None
        lines = []
        for line in text.splitlines():
            if line.startswith(_PDT_PREFIX):
                pdt = _parse_ffmpeg_pdt(line[len(_PDT_PREFIX) :]) + shift
                line = _PDT_PREFIX + _format_pdt(pdt)
            lines.append(line)
        return "\n".join(lines) + "\n"

    def master_playlist(self):
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
        for quality in self.qualities:
            width, height = self.sizes[quality]
            codecs = f',CODECS="{CODECS}"' if self.codec == "h264" else ""
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={self._bandwidth(quality)},"
                f"RESOLUTION={width}x{height},FRAME-RATE={FRAME_RATE:.3f}{codecs}"
            )
            lines.append(f"{quality}/index.m3u8")
        return "\n".join(lines) + "\n"

    @property
    def alive(self):
        return self._proc is not None and self._proc.poll() is None

    def wait(self):
        """Block until ffmpeg exits; returns its exit code."""
        return self._proc.wait()

    def stop(self):
        """Stop ffmpeg (SIGTERM, then SIGKILL after STOP_TIMEOUT) and the server."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _parse_ffmpeg_pdt(text):
    """ffmpeg writes `2026-11-28T15:20:21.299+0000`."""
    return datetime.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(
        datetime.UTC
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    teststream = None  # set by TestStream._start_server
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        stream = self.teststream
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != stream.channel:
            return self._send(404, b"not found\n", "text/plain")
        if parts[1:] == ["master.m3u8"]:
            body = stream.master_playlist().encode()
            return self._send(200, body, "application/vnd.apple.mpegurl")
        if len(parts) != 3 or parts[1] not in stream.qualities:
            return self._send(404, b"not found\n", "text/plain")
        quality, name = parts[1], parts[2]
        if name == "index.m3u8":
            text = stream.media_playlist(quality)
            if text is None:
                return self._send(404, b"no playlist yet\n", "text/plain")
            return self._send(200, text.encode(), "application/vnd.apple.mpegurl")
        if _SEGMENT_RE.fullmatch(name) or _INIT_RE.fullmatch(name):
            try:
                with open(os.path.join(stream.quality_dir(quality), name), "rb") as f:
                    body = f.read()
            except FileNotFoundError:
                return self._send(404, b"no such segment\n", "text/plain")
            return self._send(200, body, "video/mp2t" if name.endswith(".ts") else "video/mp4")
        return self._send(404, b"not found\n", "text/plain")

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        logger.debug("teststream: %s %s", self.address_string(), format % args)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m devtools.teststream",
        description="A live HLS test stream made by ffmpeg, served over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 = any (default: 8080)")
    parser.add_argument("--work-dir", required=True, help="where ffmpeg writes the stream")
    parser.add_argument("--channel", default="test", help="channel name in URLs (default: test)")
    parser.add_argument(
        "--qualities",
        default="source,240p",
        help="comma-separated: 'source' (640x360) and heights like '240p' (default: source,240p)",
    )
    parser.add_argument(
        "--container",
        choices=CONTAINERS,
        default="ts",
        help="segment container: MPEG-TS or fragmented MP4 (default: ts)",
    )
    parser.add_argument(
        "--codec",
        choices=sorted(VIDEO_CODECS),
        default="h264",
        help="video codec; hevc and av1 need --container fmp4 (default: h264)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    qualities = [q.strip() for q in args.qualities.split(",") if q.strip()]
    try:
        stream = TestStream(
            args.work_dir,
            host=args.host,
            port=args.port,
            channel=args.channel,
            qualities=qualities,
            container=args.container,
            codec=args.codec,
        )
    except ValueError as e:
        parser.error(str(e))
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stream.start()
    except (TestStreamError, OSError) as e:
        print(f"teststream: {e}", file=sys.stderr)
        return 1
    print(f"teststream: serving {stream.url}", flush=True)
    while not stopping.wait(0.5):
        if not stream.alive:
            print(f"teststream: ffmpeg died: {stream._log()}", file=sys.stderr)
            stream.stop()
            return 1
    stream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
