"""Fixtures for the editor's browser tests: Debian's chromium driven by Playwright.

The browser is `/usr/bin/chromium` from Debian (tools/setup installs it);
Playwright's own browser downloads are never used. One browser serves the
whole module; each test gets a fresh context (no shared storage or cache) in
a time zone other than UTC, so a page that shows local time instead of UTC
fails the tests.

Servers run in this (gevent-patched) process on 127.0.0.1, port 0: Playwright's
sync client waits in gevent-cooperative selects, so the hub keeps serving the
browser's requests while a test waits on the page.
"""

import datetime
import os
import socket

import gevent.pywsgi
import pytest
from playwright.sync_api import sync_playwright

from restreamer.app import create_app
from tests.conftest import MEDIA_START

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Not UTC, and not a whole-hour offset from it either.
BROWSER_TIMEZONE = "Asia/Kolkata"
# How long a page gets to reach an expected state; generous for a loaded 2-core machine.
PAGE_TIMEOUT_MS = 20_000
# The restreamer's clock in these tests: a day after the media, so every range is finished.
NOW = MEDIA_START + datetime.timedelta(days=1)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run tools/setup (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page; fails the test on any uncaught script error."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id=BROWSER_TIMEZONE
    )
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.script_errors = []
    page.on("pageerror", lambda error: page.script_errors.append(str(error)))
    yield page
    context.close()
    assert page.script_errors == []


class Served:
    """A WSGI app on 127.0.0.1, port 0, in this process."""

    def __init__(self, app):
        self.app = app
        self.server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self):
        self.server.stop(timeout=1)


@pytest.fixture
def serve():
    """`serve(app)` runs a WSGI app for the test and returns it, with `.url`."""
    servers = []

    def start(app):
        servers.append(Served(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def restreamer(serve, tmp_path):
    """`restreamer(fill)`: a real restreamer over a fresh store; `fill(base_dir)` stocks it."""

    def start(fill):
        base = str(tmp_path / "store")
        os.makedirs(base)
        fill(base)
        return serve(create_app(base, now=lambda: NOW))

    return start


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on (bound, read back, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
