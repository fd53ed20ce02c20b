"""The cutter's JSON job API, served beside /metrics on the cutter's port.

The editor page (served by the restreamer, through the node's front door or
on another port) calls it from the browser. Only signed-in editors change
anything; the public reads published jobs only.

| route | who | does |
|---|---|---|
| `GET /locations` | anyone | `{"locations": [names]}`: where this cutter can upload |
| `GET /session` | anyone | `{"editor": name or null}`: who is signed in |
| `POST /session` | anyone | `{"token": ...}` signs in: sets the session cookie; `{"editor": name}` |
| `DELETE /session` | editor | signs out |
| `GET /jobs?state=...&limit=N` | anyone | `{"jobs": [...]}` newest first: every job for an editor; DONE jobs only, in their public form, for anyone else |
| `POST /jobs` | editor | create a job from a JSON object; 201 with the job |
| `GET /jobs/<id>` | anyone | the job (the public form of a DONE job for anyone else; 404 otherwise) |
| `POST /jobs/<id>/cancel` | editor | take back an EDITED or CLAIMED job |
| `POST /jobs/<id>/submit` | editor | submit an UNEDITED job (a draft, or one that failed) |

How requests are refused (each a JSON `{"error": "one-line reason"}`):

- Cross-site request forgery: a state change (any method but GET, HEAD and
  OPTIONS) must carry `Content-Type: application/json` or an
  `X-Requested-With` header — neither can be sent by a plain HTML form, and
  a script on another origin cannot send them without a CORS preflight,
  which only the configured editor origins pass — and an `Origin`, when the
  browser sends one, must be this API's own origin or a configured editor
  origin. Otherwise 403, before anything else is looked at.
- No signed-in editor (session cookie, or `Authorization: Bearer TOKEN` for
  scripts): 401.
- Too many submissions from one editor: 429 with `Retry-After`.
- 400 for a bad request, 404 for no such job, 409 when the job's state
  forbids the change, 413 for a body over 64 KiB, 503 when the database
  cannot be reached (nothing was changed).

The session cookie is HttpOnly and SameSite=Strict, and Secure when the
request came over HTTPS (directly or as nginx's `X-Forwarded-Proto`).
"""

import flask
import prometheus_client

from common import flask_stats
from common.database import CONNECTION_ERRORS

from .editors import Editors
from .jobs import BadJob, JobError, JobNotFound, QuotaExceeded, State

# A job is a few hundred bytes; anything much bigger is not a job.
MAX_BODY = 64 * 1024
MAX_LIST = 1000
JOB_FIELDS = {
    "channel",
    "quality",
    "start",
    "end",
    "title",
    "description",
    "allow_holes",
    "upload_location",
    "state",
}
# What anyone may see of a published (DONE) job: what its video shows anyway.
PUBLIC_FIELDS = ("id", "channel", "quality", "start", "end", "duration", "title", "state",
                 "video_link", "done_at")  # fmt: skip
SESSION_COOKIE = "streamvault_session"
# Submissions per editor: (jobs, seconds). Ten a minute is a busy editor; the
# daily limit is for the uploads' own quota (YouTube's allows about six
# uploads a day per project by default): set both with `cutter run` flags.
DEFAULT_LIMITS = ((10, 60), (100, 24 * 3600))
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-Requested-With, Authorization",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Max-Age": "600",
}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class NotSignedIn(Exception):
    """A change was asked for without a signed-in editor."""


def _error(message, status, headers=None):
    return flask.jsonify(error=message), status, headers or {}


def public_json(job):
    out = job.to_json()
    return {name: out[name] for name in PUBLIC_FIELDS}


def _own_origin(request):
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    return f"{proto}://{request.host}"


def create_app(
    jobs,
    locations,
    registry=prometheus_client.REGISTRY,
    *,
    editor_origins=(),
    limits=DEFAULT_LIMITS,
    editors=None,
):
    """The API over `jobs` (a `Jobs`), accepting jobs for `locations` (names).

    `editor_origins` are the origins (`https://host[:port]`) of editor pages
    served elsewhere than this API's own origin: CORS is allowed for them
    alone (a collection the caller may add to later). `limits` are each
    editor's submission limits, (jobs, seconds) pairs.
    """
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    locations = sorted(locations)
    editors = editors or Editors(jobs.db)
    flask_stats.install(app, registry)

    def cross_origin_allowed(origin):
        return origin in editor_origins

    @app.after_request
    def cors(response):
        origin = flask.request.headers.get("Origin")
        response.vary.add("Origin")
        if origin and cross_origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.update(CORS_HEADERS)
        return response

    @app.before_request
    def refuse_forgeries():
        request = flask.request
        if request.method in SAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        if origin and origin != _own_origin(request) and not cross_origin_allowed(origin):
            return _error(f"requests from {origin[:100]} may not change anything here", 403)
        if request.mimetype != "application/json" and "X-Requested-With" not in request.headers:
            return _error(
                "a change needs Content-Type: application/json or an X-Requested-With header",
                403,
            )
        return None

    def current_editor():
        if "editor" not in flask.g:
            editor = editors.by_session(flask.request.cookies.get(SESSION_COOKIE))
            auth = flask.request.headers.get("Authorization", "")
            if editor is None and auth[:7].lower() == "bearer ":
                editor = editors.by_token(auth[7:].strip())
            flask.g.editor = editor
        return flask.g.editor

    def editor_required():
        editor = current_editor()
        if editor is None:
            raise NotSignedIn()
        return editor

    @app.errorhandler(NotSignedIn)
    def not_signed_in(e):
        return _error("sign in as an editor first", 401)

    @app.errorhandler(JobNotFound)
    def not_found(e):
        return _error(str(e), 404)

    @app.errorhandler(BadJob)
    def bad_job(e):
        return _error(str(e), 400)

    @app.errorhandler(QuotaExceeded)
    def too_many(e):
        return _error(str(e), 429, {"Retry-After": str(e.retry_after)})

    @app.errorhandler(JobError)
    def refused(e):
        return _error(str(e), 409)

    def database_down(e):
        return _error("the job database cannot be reached; try again shortly", 503)

    for error_class in CONNECTION_ERRORS:
        app.register_error_handler(error_class, database_down)

    @app.errorhandler(500)
    def internal_error(e):
        # The traceback is logged by Flask; the client gets one line, never a page.
        return _error("internal error; the cutter's log has the details", 500)

    @app.errorhandler(400)
    def bad_request(e):
        return _error("bad request", 400)

    @app.errorhandler(404)
    def no_route(e):
        return _error("no such endpoint", 404)

    @app.errorhandler(405)
    def bad_method(e):
        return _error(f"{flask.request.method} is not allowed here", 405)

    @app.errorhandler(413)
    def too_big(e):
        return _error(f"the request body is over {MAX_BODY} bytes", 413)

    @app.route("/locations")
    def list_locations():
        return flask.jsonify(locations=locations)

    @app.route("/session", methods=["GET"])
    def who():
        return flask.jsonify(editor=current_editor())

    @app.route("/session", methods=["POST"])
    def sign_in():
        body = flask.request.get_json(silent=True)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return _error('give {"token": "..."} as JSON', 400)
        editor = editors.by_token(token)
        if editor is None:
            return _error("unknown or revoked editor token", 401)
        session = editors.start_session(editor)
        response = flask.jsonify(editor=editor)
        request = flask.request
        secure = request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=int(editors.session_lifetime.total_seconds()),
            httponly=True,
            samesite="Strict",
            secure=secure,
        )
        return response

    @app.route("/session", methods=["DELETE"])
    def sign_out():
        editors.end_session(flask.request.cookies.get(SESSION_COOKIE))
        response = flask.jsonify(editor=None)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="Strict")
        return response

    @app.route("/jobs", methods=["GET"])
    def list_jobs():
        states = flask.request.args.getlist("state")
        for value in states:
            if value not in State.__members__:
                return _error(f"bad state {value[:40]!r}: one of {', '.join(State)}", 400)
        limit = flask.request.args.get("limit", "100")
        if not (limit.isascii() and limit.isdigit()) or not 0 < int(limit) <= MAX_LIST:
            return _error(f"bad limit {limit[:40]!r}: a number from 1 to {MAX_LIST}", 400)
        if current_editor() is None:
            if states and State.DONE.value not in states:
                return flask.jsonify(jobs=[])
            found = jobs.list([State.DONE], int(limit))
            return flask.jsonify(jobs=[public_json(job) for job in found])
        found = jobs.list(states or None, int(limit))
        return flask.jsonify(jobs=[job.to_json() for job in found])

    @app.route("/jobs", methods=["POST"])
    def submit_job():
        editor = editor_required()
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error("the body must be a JSON object (Content-Type: application/json)", 400)
        unknown = sorted(set(body) - JOB_FIELDS)
        if unknown:
            return _error(f"unknown field {unknown[0][:40]!r}", 400)
        fields = dict(body)
        if "upload_location" not in fields and len(locations) == 1:
            fields["upload_location"] = locations[0]
        for name in ("channel", "quality", "start", "end", "title", "upload_location"):
            if fields.get(name) in (None, ""):
                return _error(f"{name} is required", 400)
        state = fields.pop("state", State.EDITED.value)
        if state not in (State.EDITED.value, State.UNEDITED.value):
            return _error("state must be EDITED (cut it) or UNEDITED (save a draft)", 400)
        job = jobs.submit(
            state=State(state), locations=locations, created_by=editor, limits=limits, **fields
        )
        return flask.jsonify(job.to_json()), 201

    @app.route("/jobs/<int:job_id>")
    def get_job(job_id):
        job = jobs.get(job_id)
        if current_editor() is not None:
            return flask.jsonify(job.to_json())
        if job.state != State.DONE:
            raise JobNotFound(f"no job {job_id}")
        return flask.jsonify(public_json(job))

    @app.route("/jobs/<int:job_id>/cancel", methods=["POST"])
    def cancel_job(job_id):
        editor = editor_required()
        return flask.jsonify(jobs.cancel(job_id, by=editor).to_json())

    @app.route("/jobs/<int:job_id>/submit", methods=["POST"])
    def resubmit_job(job_id):
        editor = editor_required()
        return flask.jsonify(jobs.resubmit(job_id, by=editor).to_json())

    return app
