"""The cutter's JSON job API: through Flask's test client, and once over real HTTP."""

import secrets

import gevent.pywsgi
import prometheus_client
import pytest
import requests

from cutter.api import create_app
from cutter.editors import Editors
from cutter.jobs import Jobs
from tests.cutter.conftest import job_fields

GOOD = {
    "channel": "desertbus",
    "quality": "source",
    "start": "2026-11-28T13:59:45.5",
    "end": "2026-11-28T13:59:51.25",
    "title": "A clip",
}


def new_editor(jobs):
    """(name, token) of a new editor with a unique name."""
    name = f"ed-{secrets.token_hex(4)}"
    return name, Editors(jobs.db).add(name)


def signed_in(app, jobs):
    """A test client with a signed-in editor's session cookie."""
    client = app.test_client()
    name, token = new_editor(jobs)
    response = client.post("/session", json={"token": token})
    assert response.status_code == 200 and response.json == {"editor": name}
    client.editor = name
    return client


@pytest.fixture
def client(jobs, registry):
    return signed_in(create_app(jobs, ["clips"], registry), jobs)


@pytest.fixture
def refusing_client(shared_jobs, registry):
    """A client over a database shared by tests that must never make a job."""
    return signed_in(create_app(shared_jobs, ["clips"], registry), shared_jobs)


def test_submit_and_read(client, jobs):
    response = client.post("/jobs", json=dict(GOOD, description="Hello"))
    assert response.status_code == 201, response.json
    job = response.json
    assert job["state"] == "EDITED" and job["upload_location"] == "clips"  # the only one
    assert job["start"] == "2026-11-28T13:59:45.500000Z" and job["duration"] == 5.75
    assert jobs.get(job["id"]).description == "Hello"
    assert job["created_by"] == job["state_changed_by"] == client.editor
    assert client.get(f"/jobs/{job['id']}").json == job
    listed = client.get("/jobs").json["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert client.get("/jobs?state=DONE").json == {"jobs": []}
    assert client.get("/locations").json == {"locations": ["clips"]}


def test_draft_and_cancel(client):
    draft = client.post("/jobs", json=dict(GOOD, state="UNEDITED")).json
    assert draft["state"] == "UNEDITED"
    submitted = client.post(f"/jobs/{draft['id']}/submit", json={})
    assert submitted.status_code == 200 and submitted.json["state"] == "EDITED"
    again = client.post(f"/jobs/{draft['id']}/submit", json={})
    assert again.status_code == 409
    assert again.json["error"].endswith("is EDITED: only UNEDITED jobs can be submitted again")
    job = client.post("/jobs", json=GOOD).json
    cancelled = client.post(f"/jobs/{job['id']}/cancel", headers={"X-Requested-With": "editor"})
    assert cancelled.status_code == 200 and cancelled.json["state"] == "UNEDITED"
    assert cancelled.json["state_changed_by"] == client.editor
    again = client.post(f"/jobs/{job['id']}/cancel", json={})
    assert again.status_code == 409
    assert again.json == {
        "error": f"job {job['id']} is UNEDITED: only EDITED or CLAIMED jobs can be cancelled"
    }


@pytest.mark.parametrize(
    "body, status, error",
    [
        ("not json", 400, "the body must be a JSON object (Content-Type: application/json)"),
        ([1, 2], 400, "the body must be a JSON object (Content-Type: application/json)"),
        (dict(GOOD, colour="red"), 400, "unknown field 'colour'"),
        ({k: v for k, v in GOOD.items() if k != "title"}, 400, "title is required"),
        (dict(GOOD, end=GOOD["start"]), 400, "end must be after start"),
        (dict(GOOD, start="soon"), 400,
         "bad start 'soon': expected ISO 8601 UTC like 2026-11-28T13:50:07.300"),
        (dict(GOOD, upload_location="youtube"), 400,
         "unknown upload location 'youtube' (known: clips)"),
        (dict(GOOD, state="DONE"), 400,
         "state must be EDITED (cut it) or UNEDITED (save a draft)"),
        (dict(GOOD, allow_holes="no"), 400, "allow_holes must be true or false"),
        (dict(GOOD, title="x" * 200_000), 413, "the request body is over 65536 bytes"),
    ],
)  # fmt: skip
def test_bad_requests(refusing_client, shared_jobs, registry, body, status, error):
    client, jobs = refusing_client, shared_jobs
    if isinstance(body, str):
        response = client.post("/jobs", data=body, content_type="application/json")
    else:
        response = client.post("/jobs", json=body)
    assert response.status_code == status
    assert response.json == {"error": error}
    assert jobs.list() == []  # nothing was made
    response.close()  # request metrics are recorded when the response is closed
    labels = {"endpoint": "submit_job", "method": "POST", "status": str(status)}
    assert registry.get_sample_value("http_request_latency_all_count", labels) == 1


@pytest.mark.parametrize(
    "url, status, error",
    [
        ("/jobs/999", 404, "no job 999"),
        ("/jobs/abc", 404, "no such endpoint"),
        ("/jobs?state=LOST", 400, "bad state 'LOST': one of UNEDITED, EDITED, CLAIMED, "
                                  "FINALIZING, TRANSCODING, DONE"),
        ("/jobs?limit=0", 400, "bad limit '0': a number from 1 to 1000"),
        ("/jobs?limit=x", 400, "bad limit 'x': a number from 1 to 1000"),
        ("/jobs?limit=\u00b2", 400, "bad limit '\u00b2': a number from 1 to 1000"),
        ("/jobs?limit=\u0661", 400, "bad limit '\u0661': a number from 1 to 1000"),
    ],
)  # fmt: skip
def test_bad_reads(refusing_client, url, status, error):
    response = refusing_client.get(url)
    assert response.status_code == status and response.json == {"error": error}


def test_cancel_unknown_and_wrong_method(refusing_client):
    assert refusing_client.post("/jobs/999/cancel", json={}).status_code == 404
    response = refusing_client.delete("/jobs/1", json={})
    assert response.status_code == 405 and response.json == {"error": "DELETE is not allowed here"}


def test_database_down_is_503():
    app = create_app(
        Jobs("host=127.0.0.1 port=1 dbname=x connect_timeout=2"),
        ["clips"],
        prometheus_client.CollectorRegistry(),
    )
    response = app.test_client().get("/jobs")
    assert response.status_code == 503
    response = app.test_client().post("/jobs", json=GOOD, headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.json == {"error": "the job database cannot be reached; try again shortly"}


def test_over_http_with_cors(jobs, registry):
    """A browser on a configured editor origin: preflight, POST, GET, /metrics on the same port.

    Another origin gets no CORS headers at all, so a browser keeps the answers from it.
    """
    editor_origin = "http://127.0.0.1:8000"
    app = create_app(jobs, ["clips"], registry, editor_origins={editor_origin})
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    _, token = new_editor(jobs)
    auth = {"Authorization": f"Bearer {token}", "Origin": editor_origin}
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        preflight = requests.options(
            base + "/jobs",
            headers={
                "Origin": editor_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            timeout=10,
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == editor_origin
        assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
        created = requests.post(base + "/jobs", json=GOOD, headers=auth, timeout=10)
        assert created.status_code == 201
        assert created.headers["Access-Control-Allow-Origin"] == editor_origin
        got = requests.get(f"{base}/jobs/{created.json()['id']}", headers=auth, timeout=10)
        assert got.json() == created.json()
        bad = requests.post(base + "/jobs", json={}, headers=auth, timeout=10)
        assert bad.status_code == 400
        assert bad.headers["Access-Control-Allow-Origin"] == editor_origin
        elsewhere = requests.options(
            base + "/jobs",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert "Access-Control-Allow-Origin" not in elsewhere.headers
        metrics = requests.get(base + "/metrics", timeout=10).text
        assert (
            'http_request_latency_all_count{endpoint="submit_job",method="POST",status="201"} 1.0'
            in metrics
        )
    finally:
        server.stop(timeout=1)


def test_jobs_made_elsewhere_are_listed(client, jobs):
    made = jobs.submit(**job_fields())
    assert [j["id"] for j in client.get("/jobs").json["jobs"]] == [made.id]


@pytest.mark.parametrize(
    "raw, error",
    [
        ('"title": "a\\u0000b"', "title contains a NUL character or an unpaired surrogate"),
        ('"title": "T", "description": "\\ud800"',
         "description contains a NUL character or an unpaired surrogate"),
        ('"title": "line\\nbreak"',
         "title must not contain control characters or bidirectional overrides"),
        ('"title": "\\u202eevil"',
         "title must not contain control characters or bidirectional overrides"),
    ],
)  # fmt: skip
def test_hostile_text_is_a_400(refusing_client, shared_jobs, raw, error):
    """NUL and lone surrogates once gave Flask's HTML 500; they are one-line 400s."""
    body = (
        '{"channel": "desertbus", "quality": "source", "start": "2026-11-28T13:59:45.5", '
        '"end": "2026-11-28T13:59:51.25", ' + raw + "}"
    )
    response = refusing_client.post("/jobs", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json == {"error": error}
    assert shared_jobs.list() == []
