"""Editors: accounts, sign-in, who may change what, forgery, quotas, the migration, secrets."""

import gevent
import gevent.pool
import prometheus_client
import psycopg2
import pytest

from cutter.api import SESSION_COOKIE, create_app
from cutter.editors import Editors
from cutter.jobs import SCHEMA, Jobs, State
from cutter.main import Cutter
from cutter.migrations import latest
from cutter.upload_backends import YouTubeBackend
from tests.cutter.conftest import admin, fresh_database, job_fields, new_db_name, pg_lock
from tests.cutter.fake_youtube import CHUNK_QUANTUM, FakeYouTube
from tests.cutter.test_api import GOOD
from tests.cutter.test_cli import cli


@pytest.fixture
def app(jobs):
    return create_app(
        jobs,
        ["clips"],
        prometheus_client.CollectorRegistry(),
        editor_origins={"https://ed.example"},
    )


def sign_in(app, jobs, name="alice"):
    client = app.test_client()
    token = Editors(jobs.db).add(name)
    assert client.post("/session", json={"token": token}).json == {"editor": name}
    return client, token


def test_editor_commands(dsn, jobs, capsys):
    status, token, err = cli(capsys, "editors", "add", "alice@example.org", "--db", dsn)
    assert status == 0 and "shown only this once" in err
    token = token.strip()
    assert len(token) >= 40
    stored = jobs.db.query("SELECT token_hash FROM editors").rows[0]["token_hash"]
    assert token not in stored  # only its hash is kept
    assert Editors(jobs.db).by_token(token) == "alice@example.org"
    status, _, err = cli(capsys, "editors", "add", "alice@example.org", "--db", dsn)
    assert status == 1 and "revoke them first" in err
    status, out, _ = cli(capsys, "editors", "list", "--db", dsn)
    assert status == 0 and "alice@example.org" in out and "active" in out
    status, out, _ = cli(capsys, "editors", "revoke", "alice@example.org", "--db", dsn)
    assert status == 0 and "revoked" in out
    assert Editors(jobs.db).by_token(token) is None
    status, _, err = cli(capsys, "editors", "add", "bad name", "--db", dsn)
    assert status == 1 and "bad editor name" in err


def test_session_cookie_and_revocation(app, jobs):
    client, _ = sign_in(app, jobs)
    response = client.post("/session", json={"token": Editors(jobs.db).add("bob")})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    over_https = app.test_client().post(
        "/session",
        json={"token": Editors(jobs.db).add("carol")},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in over_https.headers["Set-Cookie"]
    assert client.get("/session").json == {"editor": "bob"}
    assert client.post("/jobs", json=GOOD).status_code == 201
    Editors(jobs.db).revoke("bob")
    assert client.get("/session").json == {"editor": None}
    assert client.post("/jobs", json=GOOD).status_code == 401
    assert app.test_client().post("/session", json={"token": "guess"}).status_code == 401


def test_anonymous_changes_are_refused(app, jobs):
    job = jobs.submit(**job_fields())
    anonymous = app.test_client()
    for path in ("/jobs", f"/jobs/{job.id}/cancel", f"/jobs/{job.id}/submit"):
        response = anonymous.post(path, json=GOOD)
        assert response.status_code == 401, path
        assert response.json == {"error": "sign in as an editor first"}
    assert jobs.get(job.id).state == State.EDITED and len(jobs.list()) == 1


def test_public_sees_published_jobs_only(app, jobs):
    editor, _ = sign_in(app, jobs)
    failed = jobs.submit(**job_fields(title="Secret draft"))
    jobs.fail(jobs.claim(failed, "n1"), "n1", "upload failed: https://x/upload?upload_id=SECRET")
    done = jobs.submit(**job_fields(title="Published"))
    done = jobs.start_finalizing(jobs.claim(done, "n1"), "n1")
    jobs.finish_upload(done, "n1", State.DONE, "v1", "https://clips.example/v1.ts")
    public = app.test_client()
    listed = public.get("/jobs").json["jobs"]
    assert [j["title"] for j in listed] == ["Published"]
    assert set(listed[0]) == {"id", "channel", "quality", "start", "end", "duration", "title",
                              "state", "video_link", "done_at"}  # fmt: skip
    assert public.get("/jobs?state=UNEDITED").json == {"jobs": []}
    assert public.get(f"/jobs/{failed.id}").status_code == 404
    assert public.get(f"/jobs/{done.id}").json == listed[0]
    seen = editor.get("/jobs").json["jobs"]
    assert len(seen) == 2 and "SECRET" not in str(seen)  # the error is shown, redacted


def test_forged_requests_are_refused(app, jobs):
    """A form post from another site and a cross-origin fetch, both with a live session."""
    client, _ = sign_in(app, jobs)
    job = jobs.submit(**job_fields())
    # What an HTML form on any page sends: a simple request, form-encoded.
    form = client.post(
        f"/jobs/{job.id}/cancel",
        data={"x": "1"},
        headers={"Origin": "https://evil.example"},
    )
    assert form.status_code == 403 and "may not change anything" in form.json["error"]
    # Same form, no Origin (some browsers omit it): still refused, for its content type.
    form = client.post(f"/jobs/{job.id}/cancel", data={"x": "1"})
    assert form.status_code == 403 and "application/json" in form.json["error"]
    # A script's fetch from another origin: its preflight gets no CORS grant...
    preflight = client.options(
        "/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    # ...and the request itself, were it sent, is refused.
    fetch = client.post("/jobs", json=GOOD, headers={"Origin": "https://evil.example"})
    assert fetch.status_code == 403
    assert jobs.get(job.id).state == State.EDITED and len(jobs.list()) == 1
    # The configured editor origin, and the API's own origin, may.
    ok = client.post("/jobs", json=GOOD, headers={"Origin": "https://ed.example"})
    assert ok.status_code == 201
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ed.example"
    own = client.post("/jobs", json=GOOD, headers={"Origin": "http://localhost"})
    assert own.status_code == 201


def test_submissions_are_limited_per_editor(jobs):
    app = create_app(
        jobs, ["clips"], prometheus_client.CollectorRegistry(), limits=((10, 60), (15, 86400))
    )
    client, _ = sign_in(app, jobs)
    other, _ = sign_in(app, jobs, "bob")
    statuses = []

    def post(_):
        response = client.post("/jobs", json=GOOD)
        statuses.append((response.status_code, response.headers.get("Retry-After")))

    gevent.pool.Pool(20).map(post, range(600))
    assert sorted(s for s, _ in statuses) == [201] * 10 + [429] * 590
    retry = {int(r) for s, r in statuses if s == 429}
    assert retry and all(1 <= r <= 61 for r in retry)
    assert len(jobs.list(limit=1000)) == 10
    assert other.post("/jobs", json=GOOD).status_code == 201  # each editor has their own


def test_migration_upgrades_an_existing_database():
    """A database made by the cutter before migrations keeps its jobs and gains the columns."""
    with pg_lock(), fresh_database("template0") as dsn:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(SCHEMA)  # the schema as the previous release applied it
            cursor.execute(
                'INSERT INTO events (channel, quality, start, "end", title, upload_location) '
                "VALUES ('c', 'q', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 'Old', 'l')"
            )
        conn.close()
        jobs = Jobs(dsn)
        assert jobs.init_schema() == list(range(1, latest() + 1))
        assert jobs.init_schema() == []
        (old,) = jobs.list()
        assert (old.title, old.created_by, old.state_changed_by) == ("Old", None, None)
        assert jobs.cancel(old.id, by="alice").state_changed_by == "alice"
        jobs.db.close()


def test_secrets_stay_out_of_errors_and_logs(jobs, store, tmp_path, caplog):
    """A failed YouTube upload records its reason without the session URL's query string."""
    fake = FakeYouTube()
    closed = []
    fake_close = fake.close
    fake.close = lambda: closed or closed.append(fake_close())
    try:
        backend = YouTubeBackend(
            "yt", fake.credentials(tmp_path / "creds.json"), chunk_size=CHUNK_QUANTUM,
            retries=1, backoff=(0.01, 0.02), timeouts=(5, 10),
        )  # fmt: skip
        start_session = backend._start_session

        def start_then_vanish(job, size, content_type):
            # YouTube becomes unreachable once the session exists: every PUT
            # now fails with requests' "Max retries exceeded with url: ..."
            url = start_session(job, size, content_type)
            fake.close()
            backend.session.close()  # and no kept-alive connection survives
            return url

        backend._start_session = start_then_vanish
        registry = prometheus_client.CollectorRegistry()
        cutter = Cutter(jobs, store, "node1", {"yt": backend}, registry, listen=False)
        job = jobs.submit(**job_fields(upload_location="yt", start=4, end=16))
        cutter.run_once()
        failed = jobs.get(job.id)
        assert failed.state == State.EDITED and failed.error.startswith("upload failed"), failed
        assert "/upload/youtube/v3/videos?[redacted]" in failed.error
        session_ids = list(fake.sessions)
        assert session_ids
        for secret in session_ids + ["upload_id", backend.refresh_token, backend.client_secret]:
            assert secret not in failed.error
            assert secret not in caplog.text
    finally:
        fake.close()


def test_db_file(tmp_path, capsys):
    with pg_lock():
        name = new_db_name("dbfile")
        admin(f'CREATE DATABASE "{name}"')
        try:
            path = tmp_path / "dsn"
            path.write_text(f"dbname={name}\n")
            path.chmod(0o600)
            assert cli(capsys, "init-db", "--db-file", str(path))[0] == 0
            status, _, err = cli(capsys, "init-db", "--db-file", str(tmp_path / "missing"))
            assert status == 2 and "cannot read --db-file" in err
        finally:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_sign_out(app, jobs):
    client, _ = sign_in(app, jobs)
    session = client.get_cookie(SESSION_COOKIE).value
    assert client.delete("/session", json={}).json == {"editor": None}
    assert Editors(jobs.db).by_session(session) is None
    gevent.sleep(0)
