"""Upload locations: where a cut video goes once it is cut.

A location is configured as `NAME=TYPE:ARG[,key=value...]` (see `parse_location`):

- `local:/path[,url_prefix=https://host/clips/]` — a directory. The file is
  linked into place under its final name in one step, and never over an
  existing file (so a job uploaded once can never be silently uploaded again).
  No processing step: the job is DONE at once.
- `youtube:CREDS.json[,privacy=unlisted][,category=20][,chunk_size=BYTES]` — YouTube, with the
  resumable upload protocol, then polling until the video is processed.

Every location also takes `cut_type=fast|full` (the `common.cut` type).

The cutter cuts into a spool file (in `backend.temp_dir`) and then calls
`backend.upload(job, path, finalizing, stopping)`; `path`'s extension is the
cut's container (`.ts` or `.mp4`), which names and types the upload. The backend must call
`finalizing()` immediately before the request or step that cannot be undone;
it raises `JobGone` if the job was cancelled meanwhile, and the backend lets
that propagate without making anything.

How uploads fail, and what the cutter does with each error class:

- `RetryableUploadError` (before finalizing): the job goes back to EDITED for
  any cutter to try again after a delay — network trouble, 5xx from YouTube.
- `PermanentUploadError`: the job goes to UNEDITED with the message, for a
  person — quota exceeded, credentials revoked, a file already there. If it
  happens after finalizing, the backend knows that nothing was made.
- `UploadOutcomeUnknown` (after finalizing): the job stays FINALIZING with the
  message, and an operator checks whether the video exists.
"""

import errno
import json
import logging
import os
import re
import time
import urllib.parse
from typing import NamedTuple

import requests

import common.cut
from common.backoff import Backoff

from .jobs import State
from .redact import redact

logger = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload did not complete; the message is one line for the job's `error`."""


class RetryableUploadError(UploadError):
    pass


class PermanentUploadError(UploadError):
    pass


class UploadOutcomeUnknown(UploadError):
    pass


class _Refused(PermanentUploadError):
    """The server answered the request that would make the video with a refusal."""


class UploadResult(NamedTuple):
    video_id: str
    video_link: str
    state: State  # DONE, or TRANSCODING if the backend still processes it


class CheckResult(NamedTuple):
    """How processing of an uploaded video is going."""

    done: bool
    error: str | None = None  # set when processing failed or the video was refused


CUT_TYPES = common.cut.TYPES


# The media type of a cut, by its container: the extension of the file the
# cutter hands a backend (`common.cut_mp4.output_container` chose it).
CONTENT_TYPES = {"ts": "video/mp2t", "mp4": "video/mp4"}


def container_of(path):
    """The container of the cut at `path`, from its extension (`ts` or `mp4`).
    ValueError for any other: the cutter only spools those."""
    container = os.path.splitext(path)[1].lstrip(".")
    if container not in CONTENT_TYPES:
        raise ValueError(f"{path}: not a .ts or .mp4 cut")
    return container


def video_name(job, container="ts"):
    """A file name for a job's video: its id then its title, as a safe slug, then
    the container's extension."""
    slug = re.sub(r"[^a-z0-9]+", "-", job.title.lower()).strip("-")[:60].strip("-")
    return f"{job.id}-{slug or 'clip'}.{container}"


class UploadBackend:
    """What every location provides. `cut_type` is the `common.cut` type to use."""

    def __init__(self, name, cut_type="fast"):
        if cut_type not in CUT_TYPES:
            raise ValueError(f"location {name}: cut_type must be one of {', '.join(CUT_TYPES)}")
        self.name = name
        self.cut_type = cut_type

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"

    @property
    def temp_dir(self):
        """Where to spool the cut before uploading (None = the system's temp dir)."""
        return None

    def upload(self, job, path, finalizing, stopping):
        raise NotImplementedError

    def check(self, job):
        """For TRANSCODING jobs: a CheckResult, or None if the backend could not be asked."""
        return CheckResult(done=True)


# Uploaded files are served by a web server running as another user (nginx's
# worker), but the spool file starts as mkstemp's 0600: nginx answered 403.
# Readable by all, writable by the cutter only.
LOCAL_FILE_MODE = 0o644

# errno values meaning "this filesystem cannot make hard links".
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


class LocalBackend(UploadBackend):
    """A directory (perhaps served by a web server at `url_prefix`).

    Uploads are made readable by everyone (`LOCAL_FILE_MODE`, 0644), so the web
    server that serves the directory can read them.

    The cut is spooled as a hidden file in the directory itself, so putting it
    in place is a hard link on one filesystem: atomic, and refused if the name
    exists (`os.link` never replaces). The file and directory are fsync'ed before
    the job is marked DONE, so a power cut cannot lose a video the database
    says is there.
    """

    def __init__(self, name, directory, url_prefix=None, cut_type="fast"):
        super().__init__(name, cut_type)
        self.directory = os.path.abspath(directory)
        self.url_prefix = url_prefix
        os.makedirs(self.directory, exist_ok=True)

    @property
    def temp_dir(self):
        return self.directory

    def link_for(self, name):
        if self.url_prefix:
            return self.url_prefix + urllib.parse.quote(name)
        return "file://" + urllib.parse.quote(os.path.join(self.directory, name))

    def upload(self, job, path, finalizing, stopping):
        name = video_name(job, container_of(path))
        final = os.path.join(self.directory, name)
        with open(path, "rb") as f:
            os.fchmod(f.fileno(), LOCAL_FILE_MODE)
            os.fsync(f.fileno())
        if os.path.exists(final):
            raise PermanentUploadError(
                f"{final} already exists: was this job uploaded before? Not overwriting it"
            )
        finalizing()
        try:
            os.link(path, final)
        except FileExistsError:
            raise PermanentUploadError(
                f"{final} appeared while uploading: was this job uploaded twice? Not overwriting it"
            ) from None
        except OSError as e:
            if e.errno not in NO_HARD_LINKS:
                raise UploadOutcomeUnknown(f"could not link {final}: {e}") from None
            # A filesystem without hard links (some network and FUSE mounts):
            # a rename is atomic too; only this cutter holds the job, so the
            # check above is as good as link's refusal to replace.
            os.rename(path, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        logger.info("Uploaded job %d to %s", job.id, final)
        return UploadResult(name, self.link_for(name), State.DONE)


# --- YouTube ----------------------------------------------------------------

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_API_BASE = "https://www.googleapis.com/youtube/v3"
DEFAULT_UPLOAD_BASE = "https://www.googleapis.com/upload/youtube/v3"

# Bytes per PUT. Google requires non-final chunks to be multiples of 256 KiB;
# 8 MiB keeps the number of requests small while a failed chunk costs little.
YOUTUBE_CHUNK_SIZE = 8 * 1024 * 1024
CHUNK_QUANTUM = 256 * 1024
# (connect, read) seconds for each request. A PUT of a chunk over a slow uplink
# can take tens of seconds; a server that says nothing for a minute is gone.
YOUTUBE_TIMEOUTS = (10, 60)
# Retries after a 5xx or a dropped connection, per chunk, with exponential
# backoff from the first value to the cap (seconds), as Google's upload guide
# advises. Progress (a 308 that moves the offset) resets the count.
YOUTUBE_RETRIES = 6
YOUTUBE_BACKOFF = (1, 30)
# Refresh the access token this many seconds before Google says it expires.
TOKEN_MARGIN = 60
# Reasons in Google's error body that mean "do not try again soon".
QUOTA_REASONS = ("quotaExceeded", "uploadLimitExceeded", "dailyLimitExceeded", "rateLimitExceeded")


def _error_reason(response):
    """A one-line reason from a Google API error response."""
    try:
        error = response.json()["error"]
        reasons = [e.get("reason") for e in error.get("errors", []) if e.get("reason")]
        message = error.get("message") or ""
        reason = reasons[0] if reasons else error.get("status") or ""
        text = f"{reason}: {message}" if reason else message
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text[:200]
    return f"HTTP {response.status_code} {' '.join(text.split())}".strip()


def _received_bytes(response):
    """From a 308 Resume Incomplete: how many bytes the server has (its Range header)."""
    value = response.headers.get("Range")
    if not value:
        return 0  # nothing received yet
    match = re.fullmatch(r"bytes=0-(\d+)", value.strip())
    if not match:
        raise UploadOutcomeUnknown(f"unexpected Range header {value!r} from YouTube")
    return int(match[1]) + 1


class YouTubeBackend(UploadBackend):
    """Uploads with YouTube's resumable protocol, then polls processing.

    The credentials file is JSON with `client_id`, `client_secret` and
    `refresh_token` (an OAuth client of type "desktop", authorised once for
    the `youtube.upload` and `youtube.readonly` scopes); `token_uri`,
    `api_base` and `upload_base` may override Google's addresses.

    The protocol: POST the video's metadata to start a session (the response's
    Location is the session URL); PUT the bytes in chunks with `Content-Range`;
    the server answers 308 with a `Range` header saying what it has, and 200 or
    201 with the video resource once it has everything. After a 5xx or a
    dropped connection, an empty PUT with `Content-Range: bytes */SIZE` asks
    what the server has, and the upload resumes from there. The request that
    sends the last byte is the one that creates the video: FINALIZING is
    entered just before it.
    """

    needs_processing = True

    def __init__(
        self,
        name,
        credentials_path,
        cut_type="fast",
        privacy="private",
        category="20",
        chunk_size=YOUTUBE_CHUNK_SIZE,
        retries=YOUTUBE_RETRIES,
        backoff=YOUTUBE_BACKOFF,
        timeouts=YOUTUBE_TIMEOUTS,
    ):
        super().__init__(name, cut_type)
        try:
            with open(credentials_path) as f:
                creds = json.load(f)
            self.client_id = creds["client_id"]
            self.client_secret = creds["client_secret"]
            self.refresh_token = creds["refresh_token"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"location {name}: cannot read YouTube credentials {credentials_path}: "
                f"{type(e).__name__}: {e} (want JSON with client_id, client_secret, refresh_token)"
            ) from None
        self.token_uri = creds.get("token_uri", DEFAULT_TOKEN_URI)
        self.api_base = creds.get("api_base", DEFAULT_API_BASE).rstrip("/")
        self.upload_base = creds.get("upload_base", DEFAULT_UPLOAD_BASE).rstrip("/")
        if privacy not in ("private", "unlisted", "public"):
            raise ValueError(f"location {name}: privacy must be private, unlisted or public")
        if chunk_size <= 0 or chunk_size % CHUNK_QUANTUM:
            raise ValueError(f"location {name}: chunk_size must be a multiple of {CHUNK_QUANTUM}")
        self.privacy = privacy
        self.category = str(category)
        self.chunk_size = chunk_size
        self.retries = retries
        self.backoff = backoff
        self.timeouts = timeouts
        self.session = requests.Session()
        self._token = None
        self._token_expiry = 0

    # --- auth

    def _access_token(self, force=False):
        if force or self._token is None or time.monotonic() > self._token_expiry:
            try:
                response = self.session.post(
                    self.token_uri,
                    data={
                        "grant_type": "refresh_token",
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "refresh_token": self.refresh_token,
                    },
                    timeout=self.timeouts,
                )
            except requests.RequestException as e:
                raise RetryableUploadError(redact(f"YouTube token refresh failed: {e}")) from None
            if response.status_code >= 500:
                raise RetryableUploadError(f"YouTube token refresh: HTTP {response.status_code}")
            if response.status_code != 200:
                raise PermanentUploadError(
                    f"YouTube refused the refresh token (check the credentials): "
                    f"HTTP {response.status_code} {response.text[:200]}"
                )
            body = response.json()
            self._token = body["access_token"]
            self._token_expiry = time.monotonic() + int(body.get("expires_in", 3600)) - TOKEN_MARGIN
        return self._token

    def _request(self, method, url, headers=None, **kwargs):
        """One API request with a bearer token; refreshes the token once on a 401."""
        for attempt in (1, 2):
            all_headers = {"Authorization": f"Bearer {self._access_token(force=attempt == 2)}"}
            all_headers.update(headers or {})
            response = self.session.request(
                method, url, headers=all_headers, timeout=self.timeouts, **kwargs
            )
            if response.status_code != 401:
                return response
        return response

    # --- upload

    def _start_session(self, job, size, content_type):
        body = {
            "snippet": {
                "title": job.title,
                "description": job.description,
                "categoryId": self.category,
            },
            "status": {"privacyStatus": self.privacy, "selfDeclaredMadeForKids": False},
        }
        try:
            response = self._request(
                "POST",
                f"{self.upload_base}/videos",
                params={"uploadType": "resumable", "part": "snippet,status"},
                headers={
                    "Content-Type": "application/json; charset=UTF-8",
                    "X-Upload-Content-Length": str(size),
                    "X-Upload-Content-Type": content_type,
                },
                data=json.dumps(body).encode(),
            )
        except requests.RequestException as e:
            raise RetryableUploadError(
                redact(f"YouTube: starting the upload failed: {e}")
            ) from None
        if response.status_code >= 500:
            raise RetryableUploadError(f"YouTube: starting the upload: {_error_reason(response)}")
        if response.status_code != 200 or "Location" not in response.headers:
            raise PermanentUploadError(f"YouTube refused the upload: {_error_reason(response)}")
        return response.headers["Location"]

    def _result(self, response):
        try:
            video_id = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            raise UploadOutcomeUnknown(
                f"YouTube said the upload finished but gave no video id: {response.text[:200]}"
            ) from None
        return UploadResult(video_id, f"https://youtu.be/{video_id}", State.TRANSCODING)

    def upload(self, job, path, finalizing, stopping):
        size = os.path.getsize(path)
        if size == 0:
            raise PermanentUploadError("the cut is empty; not uploading")
        content_type = CONTENT_TYPES[container_of(path)]
        session_url = self._start_session(job, size, content_type)
        logger.info("Job %d: uploading %d bytes to YouTube", job.id, size)
        state = {"finalized": False}

        def finalize():
            finalizing()  # raises JobGone if the job was cancelled
            state["finalized"] = True

        try:
            return self._send(job, path, size, content_type, session_url, finalize, stopping)
        except UploadError as e:
            # After the final request went out, only YouTube's own refusal of
            # it proves that nothing was made; anything else (a token refresh
            # failing while asking for the status) leaves the outcome open.
            if state["finalized"] and not isinstance(e, (UploadOutcomeUnknown, _Refused)):
                raise UploadOutcomeUnknown(str(e)) from None
            raise

    def _send(self, job, path, size, content_type, session_url, finalizing, stopping):
        offset = 0
        finalized = False
        backoff = Backoff(self.backoff)
        with open(path, "rb") as f:
            while True:
                end = min(offset + self.chunk_size, size)
                if end == size and not finalized:
                    finalizing()
                    finalized = True
                f.seek(offset)
                data = f.read(end - offset)
                response = None
                try:
                    response = self._request(
                        "PUT",
                        session_url,
                        headers={
                            "Content-Type": content_type,
                            "Content-Range": f"bytes {offset}-{end - 1}/{size}",
                        },
                        data=data,
                    )
                except requests.RequestException as e:
                    problem = redact(f"connection failed: {e}")
                else:
                    problem = _error_reason(response)
                # Find out where we are: from this response, or by asking.
                asked = False
                while True:
                    if response is not None:
                        if response.status_code in (200, 201):
                            return self._result(response)
                        if response.status_code == 308:
                            new_offset = _received_bytes(response)
                            if new_offset > offset:  # progress
                                backoff.success()
                                offset = new_offset
                                break
                            if asked:  # nothing more arrived: send again from there
                                offset = new_offset
                                break
                            # Data sent and none kept: a fault like any other,
                            # so a server that never keeps any cannot loop us.
                            problem = f"YouTube kept none of bytes {offset}-{end - 1}"
                        elif response.status_code in (404, 410):
                            error = f"YouTube upload session expired ({problem})"
                            if finalized:
                                raise UploadOutcomeUnknown(error)
                            raise RetryableUploadError(error)
                        elif response.status_code < 500:
                            raise _Refused(f"YouTube refused the upload: {problem}")
                    backoff.failure()
                    if backoff.failures > self.retries:
                        error = f"YouTube upload failed {backoff.failures} times, last: {problem}"
                        if finalized:
                            raise UploadOutcomeUnknown(error)
                        raise RetryableUploadError(error)
                    if not finalized and stopping.is_set():
                        raise RetryableUploadError("the cutter is stopping")
                    logger.warning(
                        "Job %d: YouTube upload problem (%s); asking where to resume",
                        job.id,
                        problem,
                    )
                    # The final request is seen through even when stopping.
                    backoff.wait(None if finalized else stopping)
                    response = None
                    asked = True
                    try:
                        response = self._request(
                            "PUT",
                            session_url,
                            headers={"Content-Range": f"bytes */{size}"},
                            data=b"",
                        )
                    except requests.RequestException as e:
                        problem = redact(f"status query failed: {e}")
                    else:
                        problem = _error_reason(response)

    def check(self, job):
        try:
            response = self._request(
                "GET",
                f"{self.api_base}/videos",
                params={"part": "status,processingDetails", "id": job.video_id},
            )
        except (requests.RequestException, UploadError) as e:
            logger.warning(
                "Job %d: cannot ask YouTube about %s: %s", job.id, job.video_id, redact(str(e))
            )
            return None
        if response.status_code != 200:
            logger.warning(
                "Job %d: YouTube status of %s: %s", job.id, job.video_id, _error_reason(response)
            )
            return None
        items = response.json().get("items", [])
        if not items:
            return CheckResult(False, f"YouTube video {job.video_id} no longer exists")
        status = items[0].get("status", {})
        processing = items[0].get("processingDetails", {})
        upload_status = status.get("uploadStatus")
        if upload_status == "processed" or processing.get("processingStatus") == "succeeded":
            return CheckResult(True)
        if upload_status in ("failed", "rejected", "deleted"):
            reason = status.get("failureReason") or status.get("rejectionReason") or ""
            return CheckResult(
                False, f"YouTube video {job.video_link} was {upload_status}: {reason}".strip()
            )
        if processing.get("processingStatus") in ("failed", "terminated"):
            reason = processing.get("processingFailureReason", "")
            return CheckResult(
                False, f"YouTube could not process {job.video_link}: {reason}".strip()
            )
        return CheckResult(False)


# --- configuration ------------------------------------------------------------

BACKENDS = {"local": LocalBackend, "youtube": YouTubeBackend}


def parse_location(spec):
    """`NAME=TYPE:ARG[,key=value...]` → a backend. ValueError with the reason.

    Example: `clips=local:/srv/clips,url_prefix=https://example.org/clips/`.
    """
    name, sep, rest = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(f"bad location {spec!r}: expected NAME=TYPE:ARG[,key=value...]")
    kind, sep, rest = rest.partition(":")
    if not sep or kind not in BACKENDS:
        raise ValueError(
            f"bad location {spec!r}: type must be one of {', '.join(BACKENDS)} (NAME=TYPE:ARG)"
        )
    arg, *options = rest.split(",")
    if not arg:
        raise ValueError(f"bad location {spec!r}: {kind} needs an argument")
    kwargs = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"bad location {spec!r}: option {option!r} is not key=value")
        kwargs[key] = value
    allowed = {
        "local": {"url_prefix", "cut_type"},
        "youtube": {"privacy", "category", "chunk_size", "cut_type"},
    }
    unknown = set(kwargs) - allowed[kind]
    if unknown:
        raise ValueError(
            f"bad location {spec!r}: unknown option {', '.join(sorted(unknown))} for {kind} "
            f"(known: {', '.join(sorted(allowed[kind]))})"
        )
    if "chunk_size" in kwargs:
        try:
            kwargs["chunk_size"] = int(kwargs["chunk_size"])
        except ValueError:
            raise ValueError(f"bad location {spec!r}: chunk_size must be a number") from None
    return BACKENDS[kind](name, arg, **kwargs)
