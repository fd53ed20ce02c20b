"""The editor's routes on the restreamer: the page, its files and hls.js, no CDN."""

import re

import flask
import pytest

from restreamer import editor
from restreamer.app import create_app


@pytest.fixture
def client(tmp_path):
    return create_app(str(tmp_path)).test_client()


@pytest.mark.parametrize("path", ["/", "/editor", "/editor/"])
def test_page(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"<title>streamvault editor</title>" in response.data


def test_page_loads_only_from_this_origin(client):
    """Every script and style the page names is served here: nothing from a CDN."""
    html = client.get("/editor").get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/editor/vendor/hls.min.js" in urls
    for url in urls:
        if url.startswith("data:"):
            continue
        assert url.startswith("/"), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.data


def test_hls_js_is_the_pinned_release(client):
    response = client.get("/editor/vendor/hls.min.js")
    assert response.status_code == 200
    assert "javascript" in response.mimetype
    with open(f"{editor.STATIC_DIR}/package.json") as f:
        pinned = flask.json.load(f)["dependencies"]["hls.js"]
    assert pinned.encode() in response.data


def test_hls_js_missing_says_how_to_fix(client, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(editor, "HLS_JS_DIR", str(tmp_path / "nowhere"))
    response = client.get("/editor/vendor/hls.min.js")
    assert response.status_code == 503
    assert b"tools/setup" in response.data
    # The node's log says it too, for the operator who never opens the page.
    assert any("player is missing" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "path, status",
    [
        ("/editor/missing.js", 404),
        ("/editor/.hidden", 403),
        ("/editor/../app.py", 403),
        ("/editor/%2e%2e/editor.py", 403),
    ],
)
def test_refusals(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert b"Traceback" not in response.data
