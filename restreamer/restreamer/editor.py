"""The editor page: watch any stored time range, mark a cut, preview it, submit it.

The page is plain HTML/CSS/JS under `static/editor/`, talking to this
restreamer (listings, playlists, `/cut` previews) on its own origin and to a
cutter's job API on whatever base URL it is given (`?api=`, or same origin
`/jobs` behind the nginx front). Its player is hls.js, installed from the
npm registry by `tools/setup` into `static/node_modules` from a pinned lock
file, and served from here: the page never loads anything from a CDN.

How it fails: when hls.js was never installed (set-up skipped), its route
answers 503 with the command that fixes it, and the page says the player could
not load; a path part starting with `.` is refused (403) like everywhere else
in the restreamer; a missing file is a plain 404.

Registered in `create_app` with `app.register_blueprint(editor.blueprint)`.
"""

import logging
import os

import flask

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
EDITOR_DIR = os.path.join(STATIC_DIR, "editor")
HLS_JS_DIR = os.path.join(STATIC_DIR, "node_modules", "hls.js", "dist")
HLS_JS_NAME = "hls.min.js"

blueprint = flask.Blueprint("editor", __name__)


def _refuse_dotfiles(path):
    if any(part.startswith(".") for part in path.split("/")):
        flask.abort(flask.Response("path parts must not start with '.'\n", 403))


@blueprint.route("/")
@blueprint.route("/editor")
@blueprint.route("/editor/")
def page():
    """The page itself; everything it needs is under /editor/."""
    response = flask.send_from_directory(EDITOR_DIR, "index.html")
    # The page is tiny and changes with the checkout: always revalidate.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.route("/editor/vendor/hls.min.js")
def hls_js():
    """hls.js from the npm install next to the page."""
    if not os.path.exists(os.path.join(HLS_JS_DIR, HLS_JS_NAME)):
        logger.warning(
            "The editor's player is missing (%s): run tools/setup",
            os.path.join(HLS_JS_DIR, HLS_JS_NAME),
        )
        return (
            "hls.js is not installed: run tools/setup (npm ci in restreamer/restreamer/static)\n",
            503,
            {"Content-Type": "text/plain; charset=utf-8"},
        )
    return flask.send_from_directory(HLS_JS_DIR, HLS_JS_NAME, max_age=3600)


@blueprint.route("/editor/<path:path>")
def static_file(path):
    """The page's scripts and styles."""
    _refuse_dotfiles(path)
    response = flask.send_from_directory(EDITOR_DIR, path)
    response.headers["Cache-Control"] = "no-cache"
    return response
