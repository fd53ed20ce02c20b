"""Route tests with Flask's test client over a real store in tmp_path."""

import os
import secrets
import shutil
import subprocess

import flask
import prometheus_client
import pytest

from common import flask_stats
from common.segments import hash_bytes, parse_segment_path
from common.stats import LogCountHandler
from restreamer.app import create_app

from .conftest import NOW, at, write_segment

ONE_LINE_TEXT = "text/plain; charset=utf-8"


def assert_one_line_error(response, status):
    assert response.status_code == status, response.data
    assert response.content_type == ONE_LINE_TEXT
    body = response.get_data(as_text=True)
    assert body.endswith("\n") and body.count("\n") == 1, body
    assert body.startswith(str(status))
    assert "<" not in body and "Traceback" not in body
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    return body


def test_listings(client, store_dir):
    # Things every reader must ignore: hidden directories and files, temp
    # files, files that are not segments, directories that are not hours.
    os.makedirs(os.path.join(store_dir, ".trash", "source"))
    os.makedirs(os.path.join(store_dir, "chan", ".hidden-quality"))
    os.makedirs(os.path.join(store_dir, "chan", "source", "not-an-hour"))
    open(os.path.join(store_dir, "README"), "w").close()
    hour = os.path.join(store_dir, "chan", "source", "2026-11-28T14")
    open(os.path.join(hour, ".00:00.000000-2.000-full-x.ts"), "w").close()
    open(os.path.join(hour, "notes.txt"), "w").close()
    open(os.path.join(hour, "00:01.000000-2.000-full-nothash.ts"), "w").close()
    write_segment(store_dir, "chan", "source", at(14, 0, 30), 2, type="temp")
    partial = write_segment(store_dir, "chan", "source", at(14, 0, 40), 2, type="partial")

    assert client.get("/files").json == ["chan"]
    assert client.get("/files/chan").json == ["480p", "source"]
    assert client.get("/files/chan/source").json == ["2026-11-28T13", "2026-11-28T14"]
    names = client.get("/files/chan/source/2026-11-28T14").json
    assert len(names) == 6
    assert names == sorted(names)
    assert names[-1] == os.path.basename(partial)
    for name in names:
        assert parse_segment_path(name).type in ("full", "partial")
    # Names agree with the files: what a peer lists, it can serve.
    assert set(names) == {n for n in os.listdir(hour) if n in names}
    assert client.get("/files/chan/source/2026-11-28T13").json[0].startswith("59:50.000000-2.000")


@pytest.mark.parametrize(
    "url, status, reason",
    [
        ("/files/nochan", 404, "no channel nochan"),
        ("/files/chan/noquality", 404, "no quality chan/noquality"),
        ("/files/chan/source/2026-11-28T15", 404, "no hour chan/source/2026-11-28T15"),
        ("/files/chan/source/2026-11-28", 400, "bad hour"),
        ("/files/chan/source/2026-13-28T15", 400, "bad hour"),
        # Says what an hour looks like, not strptime's "unconverted data remains".
        ("/files/chan/source/2026-12-02T99", 400, "no such date or hour; expected YYYY-MM-DDTHH"),
        ("/files/chan/source/1970-01-01T00", 400, "outside the years 2000 to 2099"),
        ("/files/.trash", 403, "starts with '.'"),
        ("/files/chan/..", 403, "starts with '.'"),
        ("/nowhere", 404, "not found"),
        ("/files/chan/source/2026-11-28T14/extra/parts", 404, "not found"),
    ],
)
def test_listing_errors(client, url, status, reason):
    body = assert_one_line_error(client.get(url), status)
    assert reason.lower() in body.lower()


def test_segment(client, store_dir):
    data = os.urandom(100_000)
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=data)
    url = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path)

    response = client.get(url)
    assert response.status_code == 200
    assert response.data == data
    assert response.content_type == "video/mp2t"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    cache_control = response.headers["Cache-Control"]
    assert "immutable" in cache_control and "max-age=31536000" in cache_control
    etag = response.headers["ETag"]
    assert etag == f'"{hash_bytes(data)}"'

    response = client.get(url, headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.data == data[1000:2000]
    assert response.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"

    response = client.get(url, headers={"Range": "bytes=-10"})
    assert response.status_code == 206
    assert response.data == data[-10:]

    response = client.get(url, headers={"Range": "bytes=200000-"})
    assert_one_line_error(response, 416)
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"

    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.data == b""

    response = client.head(url)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.data == b""


def test_segment_is_streamed_not_read_whole(client, store_dir):
    data = os.urandom(3_000_000)
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=data)
    url = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path)
    response = client.get(url, buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    assert 0 < len(first) < len(data)
    rest = b"".join(chunks)
    response.close()
    assert first + rest == data


@pytest.mark.parametrize(
    "name, status, reason",
    [
        # The right shape but no such file.
        ("00:00.000000-2.000-full-" + "A" * 43 + ".ts", 404, "no segment"),
        ("00:00.000000-2.000-temp-abc.ts", 404, "no segment"),
        ("00:00.000000-2.000-full-abc.ts", 400, "bad hash"),
        ("00:00.000000-2.000-weird-" + "A" * 43 + ".ts", 400, "unknown type"),
        ("index.m3u8", 400, "not a .ts or .mp4 file"),
        (".00:00.000000-2.000-full-" + "A" * 43 + ".ts", 403, "starts with '.'"),
    ],
)
def test_segment_errors(client, name, status, reason):
    body = assert_one_line_error(client.get("/segments/chan/source/2026-11-28T14/" + name), status)
    assert reason in body


def test_temp_segment_is_never_served(client, store_dir):
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, type="temp")
    response = client.get("/segments/chan/source/2026-11-28T14/" + os.path.basename(path))
    assert_one_line_error(response, 404)


def test_symlinks_out_of_the_store(tmp_path, store_dir, client):
    outside = str(tmp_path / "outside")
    secret = b"SECRET" * 100
    path = write_segment(outside, "other", "source", at(14, 0, 0), 2, data=secret)
    name = os.path.basename(path)
    # A channel, an hour and a segment file each linked to outside the store.
    os.symlink(os.path.join(outside, "other"), os.path.join(store_dir, "linked"))
    os.symlink(
        os.path.join(outside, "other", "source", "2026-11-28T14"),
        os.path.join(store_dir, "chan", "source", "2026-11-28T12"),
    )
    os.symlink(path, os.path.join(store_dir, "chan", "source", "2026-11-28T14", name))

    assert client.get("/files").json == ["chan"]
    assert client.get("/files/chan/source").json == ["2026-11-28T13", "2026-11-28T14"]
    for url in [
        f"/segments/linked/source/2026-11-28T14/{name}",
        f"/segments/chan/source/2026-11-28T12/{name}",
        f"/segments/chan/source/2026-11-28T14/{name}",
        "/files/linked",
        "/files/linked/source/2026-11-28T14",
    ]:
        response = client.get(url)
        assert_one_line_error(response, 403)
        assert b"SECRET" not in response.data


def test_symlink_inside_the_store_is_followed(store_dir, client):
    os.symlink(os.path.join(store_dir, "chan"), os.path.join(store_dir, "alias"))
    assert client.get("/files").json == ["alias", "chan"]
    assert client.get("/files/alias/source").json == ["2026-11-28T13", "2026-11-28T14"]


def test_cors_and_preflight(client):
    response = client.get("/files")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    response = client.options(
        "/segments/chan/source/2026-11-28T14/x.ts",
        headers={
            "Origin": "https://editor.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"] == "range"
    # Only what the route answers: every route is read-only.
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    for response in (client.get("/files"), client.post("/files"), client.get("/nowhere")):
        assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"


def test_method_not_allowed_is_one_line(client):
    response = client.post("/files")
    assert_one_line_error(response, 405)
    assert "GET" in response.headers["Allow"]
    assert_one_line_error(client.delete("/segments/chan/source/2026-11-28T14/x.ts"), 405)


def test_server_error_is_one_line_and_logged(store_dir, caplog, monkeypatch):
    app = create_app(store_dir, now=lambda: NOW)

    def broken(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(app.extensions["restreamer"], "subdirectories", broken)
    body = assert_one_line_error(app.test_client().get("/files"), 500)
    assert "OSError" in body and "Input/output" not in body
    assert "Error serving GET /files" in caplog.text


def test_metrics(client):
    for url in ("/files/chan", "/files/nochan", "/nowhere"):
        # Metrics are taken when the response is closed (after its last byte).
        client.get(url).close()
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'http_request_latency_list_qualities_count{channel="chan",method="GET",status="200"} 1.0'
        in text
    )
    # A channel the store does not have is no label value of its own.
    assert (
        'http_request_latency_list_qualities_count{channel="other",method="GET",status="404"} 1.0'
        in text
    )
    assert (
        'http_request_latency_all_count{endpoint="unknown",method="GET",status="404"} 1.0' in text
    )


def test_apps_do_not_share_metrics(store_dir):
    # Two apps in one process: each has its own fresh registry.
    first = create_app(store_dir).test_client()
    second = create_app(store_dir).test_client()
    first.get("/files").close()
    assert "list_channels" in first.get("/metrics").get_data(as_text=True)
    assert "list_channels" not in second.get("/metrics").get_data(as_text=True)


def test_segment_requests_are_measured_once(client, store_dir):
    """Streamed file bodies still run the response's close callbacks: one observation each."""
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=b"x" * 5000)
    url = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path)
    with client.get(url) as response:
        etag = response.headers["ETag"]
    client.get(url, headers={"Range": "bytes=0-9"}).close()
    client.get(url, headers={"If-None-Match": etag}).close()
    client.head(url).close()
    client.get(url, headers={"Range": "bytes=9000-"}).close()
    text = client.get("/metrics").get_data(as_text=True)
    for method, status in [("GET", 200), ("GET", 206), ("GET", 304), ("HEAD", 200), ("GET", 416)]:
        line = (
            f'http_request_latency_segment_count{{channel="chan",method="{method}",'
            f'quality="source",status="{status}"}} 1.0'
        )
        assert line in text
    assert (
        'http_requests_in_flight_segment{channel="chan",method="GET",quality="source"} 0.0' in text
    )


@pytest.mark.slow  # runs promtool
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by tools/setup")
def test_real_metrics_pass_promtool_after_every_route(store_dir):
    """The app's own /metrics, once every route has answered (found and not found)."""
    registry = prometheus_client.CollectorRegistry()
    LogCountHandler(registry)
    app = create_app(store_dir, registry, now=lambda: NOW)
    client = app.test_client()
    name = sorted(os.listdir(os.path.join(store_dir, "chan", "source", "2026-11-28T14")))[0]
    values = {
        "channel": "chan",
        "quality": "source",
        "hour": "2026-11-28T14",
        "name": name,
        "path": "editor.js",
    }
    # Past the recording: the cut answers 406 (no content) without ffmpeg.
    query = {"start": "2026-11-28T16:00:00", "end": "2026-11-28T16:00:10"}
    endpoints = set()
    with app.test_request_context():
        urls = [
            (rule.endpoint, flask.url_for(rule.endpoint, **{a: values[a] for a in rule.arguments}))
            for rule in app.url_map.iter_rules()
        ]
    for endpoint, url in urls:
        for target in (url, url.replace("chan", "nochan", 1)):
            client.get(target, query_string=query).close()
        endpoints.add(endpoint)
    assert {"list_hour_names", "cut", "segment", "media_playlist"} <= endpoints
    text = client.get("/metrics").data
    for endpoint in endpoints - {"metrics"}:
        suffix = flask_stats.metric_suffix(endpoint)
        assert f"http_request_latency_{suffix}_bucket".encode() in text, endpoint
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_metrics_stay_bounded_under_random_names(client):
    """Label values come from the store: a flood of made-up names adds no series."""
    names = []

    def flood(count):
        for _ in range(count):
            a, b = f"n{secrets.token_hex(4)}", f"n{secrets.token_hex(4)}"
            names.extend((a, b))
            for url in (
                f"/files/{a}",
                f"/files/{a}/{b}",
                f"/files/chan/{b}",
                f"/files/{a}/{b}/2026-11-28T14",
                f"/segments/{a}/source/2026-11-28T14/{b}.ts",
                f"/playlist/{a}.m3u8",
                f"/playlist/chan/{b}.m3u8",
                f"/cut/{a}/{b}.ts?start=2026-11-28T14:00:00&end=2026-11-28T14:00:01",
            ):
                client.get(url).close()
            client.open("/files/chan", method=f"X{a}").close()  # any token is a method

    flood(3)
    before = client.get("/metrics").get_data(as_text=True).splitlines()
    flood(300)
    after = client.get("/metrics").get_data(as_text=True)
    assert len(after.splitlines()) == len(before)
    assert not [name for name in names if name in after]
    assert 'channel="other"' in after and 'method="other"' in after


@pytest.mark.parametrize(
    "header, status, body",
    [
        ("bytes=0-9", 206, slice(0, 10)),
        ("bytes=990-", 206, slice(990, 1000)),
        ("bytes=2000-", 416, None),  # well-formed, but past the end
        # Malformed, in another unit, or several: ignored (RFC 9110, 14.2).
        ("bytes=5-1", 200, slice(None)),
        ("bytes=abc", 200, slice(None)),
        ("bytes=--1", 200, slice(None)),
        ("items=0-5", 200, slice(None)),
        ("bytes=0-1,5-6", 200, slice(None)),
    ],
)
def test_range_headers(client, store_dir, header, status, body):
    data = os.urandom(1000)
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=data)
    url = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path)
    response = client.get(url, headers={"Range": header})
    assert response.status_code == status, response.data
    if body is not None:
        assert response.data == data[body]
