"""Submitting cuts from the page to a real cutter: its job API, its worker, PostgreSQL.

The cutter runs in this process: its job API on a gevent WSGI server on
127.0.0.1 (port 0), its worker as a greenlet, both over a fresh PostgreSQL
database that is dropped afterwards. The page talks to the API across origins
(the restreamer serves the page), as it does on a node.
"""

import json
import os
import shutil
import subprocess
import urllib.parse

import gevent
import prometheus_client
import pytest

from common.database import Database
from cutter import api as cutter_api
from cutter.editors import Editors
from cutter.jobs import Jobs
from cutter.main import Cutter
from cutter.upload_backends import parse_location
from tests.conftest import MEDIA_START
from tests.cutter.conftest import admin, new_db_name, pg_lock
from tests.editor.test_browser import (
    editor_url,
    hls_errors,
    mark_with_keys,
    seconds,
    stock,
    wait_for,
    wait_loaded,
)

# Where the job test leaves its picture of the page when asked to (README's docs/editor.png).
SCREENSHOT_ENV = "EDITOR_SCREENSHOT"


@pytest.fixture
def database():
    """A fresh PostgreSQL database over the local socket; its DSN. Dropped afterwards.

    Held under the cutter tests' shared lock, so their cluster-restart test
    never pulls PostgreSQL from under this one.
    """
    name = new_db_name("editor")
    with pg_lock():
        admin(f'CREATE DATABASE "{name}"')
        try:
            yield f"dbname={name}"
        finally:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cutter(database, serve, tmp_path):
    """The cutter's job API, served, with one local upload location; `.start_worker(store)`."""

    class Running:
        def __init__(self):
            self.jobs = Jobs(Database(database))
            self.jobs.init_schema()
            self.out_dir = tmp_path / "uploads"
            self.backends = {"local": parse_location(f"local=local:{self.out_dir}")}
            self.registry = prometheus_client.CollectorRegistry()
            # The page's origin (the restreamer's), added once it is serving.
            self.origins = set()
            self.token = Editors(self.jobs.db).add("tester")
            self.api = serve(
                cutter_api.create_app(
                    self.jobs, self.backends, self.registry, editor_origins=self.origins
                )
            )
            self.url = self.api.url
            self.worker = None

        def start_worker(self, base_dir):
            self.worker = Cutter(
                self.jobs, base_dir, "editor-test", self.backends, self.registry, poll_interval=0.2
            )
            self.greenlet = gevent.spawn(self.worker.run)

        def stop(self):
            if self.worker:
                self.worker.stop()
                self.greenlet.join(timeout=10)
                self.greenlet.kill()
            self.jobs.db.close()

    running = Running()
    yield running
    running.stop()


def video_duration(path):
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "format=duration", "-of", "json", path],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    return float(json.loads(probe.stdout)["format"]["duration"])


def job_row(page, job_id):
    return page.locator(f"#jobs tbody tr[data-id='{job_id}']")


def submitted_id(page):
    page.wait_for_selector("#submit-status.status-ok, #submit-status.status-error")
    text = page.text_content("#submit-status")
    assert text.startswith("Submitted as job "), text
    return int(text.removeprefix("Submitted as job ").rstrip("."))


@pytest.mark.slow
def test_submitted_cut_reaches_done_with_its_link(page, restreamer, cutter, media, tmp_path):
    server = restreamer(stock(media))
    cutter.origins.add(server.url)
    page.goto(editor_url(server, MEDIA_START, MEDIA_START + seconds(30), api=cutter.url))
    wait_loaded(page)
    # Signed out, the page offers to sign in; a wrong token is refused; the right one signs in.
    page.wait_for_selector("#sign-in-form:not([hidden])")
    page.fill("#editor-token", "not-a-token")
    page.click("#sign-in")
    page.wait_for_selector("#sign-in-status.status-error")
    assert "401" in page.text_content("#sign-in-status")
    page.fill("#editor-token", cutter.token)
    page.click("#sign-in")
    page.wait_for_selector("#signed-in:not([hidden])")
    assert page.text_content("#editor-name") == "tester"
    # The cutter's only upload location is offered, and the (empty) list loads.
    wait_for(page, "document.getElementById('upload-location').value === 'local'")
    page.wait_for_selector("#jobs tbody tr.empty")

    mark_with_keys(page, 3, 8)
    page.fill("#title", "Five seconds of test pattern")
    page.fill("#description", "cut in the editor's test")

    # A location the cutter does not serve: refused, and the reason is shown.
    page.fill("#upload-location", "nowhere")
    page.click("#submit")
    page.wait_for_selector("#submit-status.status-error")
    refusal = page.text_content("#submit-status")
    assert refusal.startswith(f"The cutter API at {cutter.url} answered 400"), refusal
    assert "nowhere" in refusal

    # No worker yet: the job waits as EDITED and can be cancelled from the list.
    page.fill("#upload-location", "local")
    page.click("#submit")
    waiting = submitted_id(page)
    job_row(page, waiting).and_(page.locator("[data-state=EDITED]")).wait_for()
    job_row(page, waiting).get_by_role("button", name="Cancel").click()
    job_row(page, waiting).and_(page.locator("[data-state=UNEDITED]")).wait_for()
    assert cutter.jobs.get(waiting).state.value == "UNEDITED"
    assert cutter.jobs.get(waiting).state_changed_by == "tester"

    # With a worker running, the next submission is cut and uploaded.
    cutter.start_worker(str(tmp_path / "store"))
    page.click("#submit")
    job_id = submitted_id(page)
    row = job_row(page, job_id)
    row.and_(page.locator("[data-state=DONE]")).wait_for()
    assert row.locator("td").nth(1).text_content() == "Five seconds of test pattern"
    assert "2026-11-28T13:59:45.000 → 13:59:50.000 (5.000 s)" in row.text_content()

    link = row.locator("td.link-cell a")
    href = link.get_attribute("href")
    assert href == cutter.jobs.get(job_id).video_link
    path = urllib.parse.unquote(urllib.parse.urlparse(href).path)
    assert os.path.dirname(path) == str(cutter.out_dir)
    assert abs(video_duration(path) - 5) < 0.05
    assert hls_errors(page) == []

    picture = tmp_path / "editor.png"
    page.screenshot(path=str(picture), full_page=True)
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(picture, os.environ[SCREENSHOT_ENV])


EVIL_PAGE = """<!doctype html>
<html><body>
<iframe name="sink"></iframe>
<form id="forged" method="POST" action="{api}/jobs/{job_id}/cancel" target="sink">
  <input name="reason" value="forged">
</form>
<script>
  window.fetchResult = "pending";
  fetch("{api}/jobs", {{
    method: "POST", credentials: "include",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{channel: "desertbus", quality: "source", title: "forged",
                           start: "2026-11-28T13:59:45", end: "2026-11-28T13:59:50"}}),
  }}).then((r) => {{ window.fetchResult = "answered " + r.status; }},
           (e) => {{ window.fetchResult = "refused: " + e.message; }});
</script>
</body></html>"""


@pytest.mark.slow
def test_another_sites_form_and_fetch_change_nothing(page, cutter, serve):
    """A signed-in editor visits a hostile page: its form post and its fetch are refused.

    The hostile page is on 127.0.0.1 too (another port: the same *site*), so
    the SameSite=Strict cookie is sent with both; what refuses them is the
    API's own check of the Origin and content type, and the lack of a CORS grant.
    """
    job = cutter.jobs.submit(
        channel="desertbus", quality="source", title="Keep me", upload_location="local",
        start="2026-11-28T13:59:45", end="2026-11-28T13:59:50",
    )  # fmt: skip

    def evil_app(environ, start_response):
        body = EVIL_PAGE.format(api=cutter.url, job_id=job.id).encode()
        start_response(
            "200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))]
        )
        return [body]

    evil = serve(evil_app)
    # Sign in as the editor would (same origin as the API), so the browser holds the cookie.
    page.goto(f"{cutter.url}/locations")
    signed = page.evaluate(
        """async (token) => (await fetch("/session", {method: "POST",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({token})})).status""",
        cutter.token,
    )
    assert signed == 200
    assert page.context.cookies(cutter.url)[0]["sameSite"] == "Strict"

    page.goto(evil.url + "/")
    page.wait_for_function("window.fetchResult !== 'pending'")
    assert page.evaluate("window.fetchResult").startswith("refused"), page.evaluate(
        "window.fetchResult"
    )
    with page.expect_response(f"{cutter.url}/jobs/{job.id}/cancel") as answer:
        page.evaluate("document.getElementById('forged').submit()")
    assert answer.value.status == 403
    assert cutter.jobs.get(job.id).state.value == "EDITED"
    assert [j.title for j in cutter.jobs.list()] == ["Keep me"]
