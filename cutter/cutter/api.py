"""The cutter's JSON job API, served beside /metrics on the cutter's port.

The editor page (served by the restreamer, on another port) calls it from the
browser, so every response carries permissive CORS headers and preflight
(OPTIONS) requests are answered.

| route | does |
|---|---|
| `GET /locations` | `{"locations": [names]}`: where this cutter can upload |
| `GET /jobs?state=EDITED&state=DONE&limit=N` | `{"jobs": [job, ...]}`, newest first |
| `POST /jobs` | create a job from a JSON object; 201 with the job |
| `GET /jobs/<id>` | the job |
| `POST /jobs/<id>/cancel` | take back an EDITED or CLAIMED job; the job |
| `POST /jobs/<id>/submit` | submit an UNEDITED job (a draft, or one that failed); the job |

A job's JSON has every column of `events` (times as ISO 8601 UTC) plus
`duration` in seconds. Errors are JSON `{"error": "one-line reason"}`: 400 for
a bad request, 404 for no such job, 409 when the job's state forbids the
change, 503 when the database cannot be reached (nothing was changed).
"""

import flask
import prometheus_client

from common import flask_stats
from common.database import CONNECTION_ERRORS

from .jobs import BadJob, JobError, JobNotFound, State

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
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


def _error(message, status):
    return flask.jsonify(error=message), status


def create_app(jobs, locations, registry=prometheus_client.REGISTRY):
    """The API over `jobs` (a `Jobs`), accepting jobs for `locations` (names)."""
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    locations = sorted(locations)
    flask_stats.install(app, registry)

    @app.after_request
    def cors(response):
        response.headers.update(CORS_HEADERS)
        return response

    @app.errorhandler(JobNotFound)
    def not_found(e):
        return _error(str(e), 404)

    @app.errorhandler(BadJob)
    def bad_job(e):
        return _error(str(e), 400)

    @app.errorhandler(JobError)
    def refused(e):
        return _error(str(e), 409)

    def database_down(e):
        return _error("the job database cannot be reached; try again shortly", 503)

    for error_class in CONNECTION_ERRORS:
        app.register_error_handler(error_class, database_down)

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

    @app.route("/jobs", methods=["GET"])
    def list_jobs():
        states = flask.request.args.getlist("state")
        for value in states:
            if value not in State.__members__:
                return _error(f"bad state {value!r}: one of {', '.join(State)}", 400)
        limit = flask.request.args.get("limit", "100")
        if not limit.isdigit() or not 0 < int(limit) <= MAX_LIST:
            return _error(f"bad limit {limit!r}: a number from 1 to {MAX_LIST}", 400)
        found = jobs.list(states or None, int(limit))
        return flask.jsonify(jobs=[job.to_json() for job in found])

    @app.route("/jobs", methods=["POST"])
    def submit_job():
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error("the body must be a JSON object (Content-Type: application/json)", 400)
        unknown = sorted(set(body) - JOB_FIELDS)
        if unknown:
            return _error(f"unknown field {unknown[0]!r}", 400)
        fields = dict(body)
        if "upload_location" not in fields and len(locations) == 1:
            fields["upload_location"] = locations[0]
        for name in ("channel", "quality", "start", "end", "title", "upload_location"):
            if fields.get(name) in (None, ""):
                return _error(f"{name} is required", 400)
        state = fields.pop("state", State.EDITED.value)
        if state not in (State.EDITED.value, State.UNEDITED.value):
            return _error("state must be EDITED (cut it) or UNEDITED (save a draft)", 400)
        job = jobs.submit(state=State(state), locations=locations, **fields)
        return flask.jsonify(job.to_json()), 201

    @app.route("/jobs/<int:job_id>")
    def get_job(job_id):
        return flask.jsonify(jobs.get(job_id).to_json())

    @app.route("/jobs/<int:job_id>/cancel", methods=["POST"])
    def cancel_job(job_id):
        return flask.jsonify(jobs.cancel(job_id).to_json())

    @app.route("/jobs/<int:job_id>/submit", methods=["POST"])
    def resubmit_job(job_id):
        return flask.jsonify(jobs.resubmit(job_id).to_json())

    return app
