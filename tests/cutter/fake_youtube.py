"""A local stand-in for the three Google endpoints the YouTube backend uses.

YouTube cannot be reached from tests, so this follows Google's documented
protocols closely enough that a client which works here works there:

- OAuth token refresh: `POST /token` with `grant_type=refresh_token`; a bad
  refresh token is `400 {"error": "invalid_grant"}`.
- Resumable upload (developers.google.com/youtube/v3/guides/using_resumable_upload_protocol):
  `POST /upload/youtube/v3/videos?uploadType=resumable&part=...` with the video
  resource as JSON and `X-Upload-Content-Length` starts a session, answered
  `200` with the session URL in `Location`. `PUT` to it with
  `Content-Range: bytes FIRST-LAST/TOTAL` sends bytes; non-final chunks must be
  multiples of 256 KiB. The answer is `308 Resume Incomplete` with
  `Range: bytes=0-N` (no `Range` when nothing is stored), or `201` with the
  video resource once every byte is there. An empty `PUT` with
  `Content-Range: bytes */TOTAL` asks for the status. Errors are JSON
  `{"error": {"code", "message", "errors": [{"reason", ...}]}}`, e.g. `403`
  `quotaExceeded`; an unknown session is `404`.
- `GET /youtube/v3/videos?part=status,processingDetails&id=ID`: the video's
  `status.uploadStatus` (`uploaded` then `processed`, or `rejected`) and
  `processingDetails.processingStatus` (`processing` then `succeeded`).

Faults are scripted: `fake.script.append(Fault(when, do, ...))`; the first
matching fault is used once. `when` is `session`, `chunk` (a non-final PUT),
`final` (the PUT ending with the last byte), `status` (a status query) or
`videos`; `do` is an HTTP status code (answered with Google's error body,
storing nothing), `"quota"`, `"drop"` (store `after` bytes of the body, then
cut the connection without answering), `"ignore"` (keep nothing, answer 308),
or `"hold"` (store everything, and make
the video if it is complete, then wait for `fake.release` before answering).
"""

import json
import secrets
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK_QUANTUM = 256 * 1024


@dataclass
class Fault:
    when: str
    do: object
    after: int = 0


@dataclass
class Session:
    resource: dict
    size: int
    content_type: str  # X-Upload-Content-Type: the video's media type
    data: bytearray = field(default_factory=bytearray)
    video_id: str | None = None


@dataclass
class Video:
    id: str
    resource: dict
    data: bytes
    content_type: str
    polls: int = 0
    reject: str | None = None


class FakeYouTube:
    def __init__(self, processing_polls=1):
        self.client_id, self.client_secret = "client-id", "client-secret"
        self.refresh_token = "refresh-" + secrets.token_hex(4)
        self.tokens = set()
        self.sessions = {}
        self.videos = {}
        self.script = []
        self.log = []  # (kind, detail) of every request, in order
        self.processing_polls = processing_polls
        self.release = threading.Event()
        self.holding = threading.Event()  # set while a "hold" fault waits
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def credentials(self, path):
        """Write a credentials file pointing the backend here; returns its path."""
        with open(path, "w") as f:
            json.dump(
                {
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "refresh_token": self.refresh_token,
                    "token_uri": self.url + "/token",
                    "api_base": self.url + "/youtube/v3",
                    "upload_base": self.url + "/upload/youtube/v3",
                },
                f,
            )
        return str(path)

    def expire_tokens(self):
        self.tokens.clear()

    def take_fault(self, when):
        with self.lock:
            for i, fault in enumerate(self.script):
                if fault.when == when:
                    return self.script.pop(i)
        return None

    def kinds(self):
        return [kind for kind, _ in self.log]


def google_error(code, reason, message):
    return code, {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"domain": "youtube", "reason": reason, "message": message}],
        }
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that went away (killed in a test) is expected, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    @property
    def fake(self):
        return self.server.fake

    def _send(self, code, body=None, headers=None, reason=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code, reason)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self, limit=None):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length if limit is None else min(limit, length))

    def _authorised(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.fake.tokens:
            return True
        self._body()
        self._send(*google_error(401, "authError", "Invalid Credentials"))
        return False

    def _fault_status(self, fault):
        self._body()
        if fault.do == "quota":
            self._send(
                *google_error(
                    403,
                    "quotaExceeded",
                    "The request cannot be completed because you have exceeded your quota.",
                )
            )
        else:
            self._send(*google_error(int(fault.do), "backendError", "Backend Error"))

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            form = urllib.parse.parse_qs(self._body().decode())
            self.fake.log.append(("token", ""))
            if (
                form.get("grant_type") != ["refresh_token"]
                or form.get("refresh_token") != [self.fake.refresh_token]
                or form.get("client_id") != [self.fake.client_id]
                or form.get("client_secret") != [self.fake.client_secret]
            ):
                return self._send(400, {"error": "invalid_grant", "error_description": "Bad"})
            token = "ya29." + secrets.token_hex(8)
            self.fake.tokens.add(token)
            return self._send(
                200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
            )
        if url.path != "/upload/youtube/v3/videos":
            return self._send(404, {"error": {"code": 404, "message": "Not Found"}})
        query = urllib.parse.parse_qs(url.query)
        if not self._authorised():
            return
        self.fake.log.append(("session", ""))
        fault = self.fake.take_fault("session")
        if fault is not None:
            return self._fault_status(fault)
        try:
            resource = json.loads(self._body())
            title = resource["snippet"]["title"]
            size = int(self.headers["X-Upload-Content-Length"])
            content_type = self.headers["X-Upload-Content-Type"]
            assert content_type.startswith("video/")
            assert query.get("uploadType") == ["resumable"] and "part" in query
            assert self.headers["Content-Type"].startswith("application/json")
            assert title and size > 0
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._send(*google_error(400, "invalidRequest", "Bad session request"))
        upload_id = secrets.token_urlsafe(12)
        self.fake.sessions[upload_id] = Session(resource, size, content_type)
        location = (
            f"{self.fake.url}/upload/youtube/v3/videos?uploadType=resumable&upload_id={upload_id}"
        )
        self._send(200, headers={"Location": location})

    def _complete(self, session):
        video = self.fake.videos[session.video_id]
        return self._send(201, dict(video.resource, id=video.id, kind="youtube#video"))

    def _incomplete(self, session):
        headers = {}
        if session.data:
            headers["Range"] = f"bytes=0-{len(session.data) - 1}"
        self._send(308, headers=headers, reason="Resume Incomplete")

    def _finish(self, session):
        video_id = secrets.token_urlsafe(8)
        session.video_id = video_id
        self.fake.videos[video_id] = Video(
            video_id, session.resource, bytes(session.data), session.content_type
        )

    def do_PUT(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        session = self.fake.sessions.get((query.get("upload_id") or [""])[0])
        if session is None:
            self._body()
            return self._send(*google_error(404, "notFound", "Upload session not found"))
        content_range = self.headers.get("Content-Range", "")
        if content_range == f"bytes */{session.size}":
            self.fake.log.append(("status", len(session.data)))
            fault = self.fake.take_fault("status")
            if fault is not None:
                return self._fault_status(fault)
            self._body()
            if session.video_id:
                return self._complete(session)
            return self._incomplete(session)
        try:
            unit, _, rest = content_range.partition(" ")
            span, _, total = rest.partition("/")
            first, _, last = span.partition("-")
            first, last, total = int(first), int(last), int(total)
            length = int(self.headers["Content-Length"])
            assert unit == "bytes" and total == session.size and length == last - first + 1
        except (ValueError, KeyError, AssertionError):
            self._body()
            return self._send(
                *google_error(400, "badContent", f"Bad Content-Range {content_range}")
            )
        if self.headers.get("Content-Type") != session.content_type:  # not what was announced
            self._body()
            return self._send(*google_error(400, "badContent", "Content-Type does not match"))
        final = last + 1 == session.size
        if session.video_id or first != len(session.data) or (not final and length % CHUNK_QUANTUM):
            self._body()
            return self._send(*google_error(400, "badContent", "Chunk does not fit the upload"))
        kind = "final" if final else "chunk"
        self.fake.log.append((kind, first))
        fault = self.fake.take_fault(kind)
        if fault is not None and fault.do == "drop":
            session.data += self._body(limit=fault.after)
            return self._drop()
        if fault is not None and fault.do == "ignore":
            self._body()
            return self._incomplete(session)
        if fault is not None and fault.do != "hold":
            return self._fault_status(fault)
        session.data += self._body()
        if final:
            self._finish(session)
        if fault is not None:  # hold: the bytes (and the video) are there; the answer waits
            self.fake.holding.set()
            self.fake.release.wait()
        if not final:
            return self._incomplete(session)
        return self._complete(session)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/youtube/v3/videos":
            return self._send(404, {"error": {"code": 404, "message": "Not Found"}})
        if not self._authorised():
            return
        self.fake.log.append(("videos", ""))
        fault = self.fake.take_fault("videos")
        if fault is not None:
            return self._fault_status(fault)
        query = urllib.parse.parse_qs(url.query)
        items = []
        for video_id in (query.get("id") or [""])[0].split(","):
            video = self.fake.videos.get(video_id)
            if video is None:
                continue
            video.polls += 1
            if video.reject:
                status = {"uploadStatus": "rejected", "rejectionReason": video.reject}
                processing = {"processingStatus": "terminated"}
            elif video.polls > self.fake.processing_polls:
                status = {"uploadStatus": "processed"}
                processing = {"processingStatus": "succeeded"}
            else:
                status = {"uploadStatus": "uploaded"}
                processing = {"processingStatus": "processing"}
            items.append(
                {"kind": "youtube#video", "id": video_id, "status": status,
                 "processingDetails": processing}
            )  # fmt: skip
        self._send(200, {"kind": "youtube#videoListResponse", "items": items})
