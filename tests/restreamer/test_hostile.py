"""Hostile input: never a 500, never a byte from outside the store.

Every request below is sent twice: through Flask's test client, and as raw
bytes to the real gevent server (which decodes the request line itself, so
percent-encoding and odd bytes reach the app the way they would in service).
Outside the store, in a hidden file and in a temp file sits a marker that must
never appear in a response.
"""

import os
import urllib.parse

import gevent
import gevent.socket
import pytest

from restreamer.app import create_app
from restreamer.main import Server

from .conftest import NOW, at, write_segment

SECRET = b"SECRET-BYTES-" * 50
HOUR = "2026-11-28T14"
GOOD = "00:00.000000-2.000-full-" + "A" * 43 + ".ts"
RAW_TIMEOUT = 10  # seconds


@pytest.fixture
def hostile_store(store_dir, tmp_path):
    """The usual store, plus secrets next to it, in a hidden file and in a temp file."""
    outside = write_segment(str(tmp_path / "outside"), "chan", "source", at(14, 0, 0), 2, SECRET)
    with open(str(tmp_path / "secret.txt"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(store_dir, "chan", "source", HOUR, ".hidden.ts"), "wb") as f:
        f.write(SECRET)
    temp = write_segment(store_dir, "chan", "source", at(14, 0, 30), 2, SECRET, type="temp")
    return store_dir, os.path.basename(outside), os.path.basename(temp)


def hostile_paths(outside_name, temp_name):
    q = urllib.parse.quote
    return [
        "/segments/../secret.txt",
        "/segments/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        f"/segments/chan/source/{HOUR}/..%2f..%2f..%2f..%2fsecret.txt",
        f"/segments/chan/source/{HOUR}/..%2F..%2F..%2F..%2Foutside%2Fchan%2Fsource%2F{HOUR}%2F{q(outside_name)}",
        f"/segments/..%2foutside%2fchan/source/{HOUR}/{q(outside_name)}",
        f"/segments/chan/source/{HOUR}/%2e%2e%5c%2e%2e%5csecret.txt",
        f"/segments/chan/source/{HOUR}/.hidden.ts",
        f"/segments/chan/source/{HOUR}/%2ehidden.ts",
        f"/segments/chan/source/{HOUR}/{q(temp_name)}",
        f"/segments/chan/source/{HOUR}/%00{GOOD}",
        f"/segments/chan/source/{HOUR}/{GOOD}%00.txt",
        f"/segments/chan/source/{HOUR}/%c0%ae%c0%ae%c0%afsecret.txt",
        f"/segments/chan/source/{HOUR}/%252e%252e%252fsecret.txt",
        "/segments//etc/passwd",
        "/segments/%2fetc%2fpasswd/source/x/y",
        f"/segments/chan/source/{HOUR}/%2fetc%2fpasswd",
        "/files/..",
        "/files/%2e%2e",
        "/files/%2e%2e/%2e%2e",
        "/files/chan/%2e%2e%2f%2e%2e",
        "/files/~",
        "/files/%00",
        "/files/chan/source/..%2f..",
        "/files/\u00e9\u00e8",
        "/files/%e2%80%ae",
        "/files/%ff%fe",
        "/files/" + "a" * 300,
        "/playlist/..%2f..%2fsecret.m3u8",
        "/playlist/%2e%2e/source.m3u8",
        "/playlist/chan/..%2f..%2fsecret.m3u8",
        "/playlist/.chan.m3u8",
    ]


BAD_QUERIES = [
    ("start=garbage", 400),
    ("start=2026-13-01T00:00", 400),
    ("start=2026-11-28T25:00", 400),
    ("start=2026-11-28T14:00:00&end=2026-11-28T14:00:00", 400),
    ("start=2026-11-28T14:00:00&end=2026-11-28T13:00:00", 400),
    ("start=0001-01-01T00:00:00&end=9999-12-31T23:59:59", 400),
    ("start=9999-12-31T23:59:59-01:00", 400),
    ("start=0001-01-01T00:00:00%2B01:00", 400),
    ("start=0001-01-01T00:00:00", 400),  # a live range of 2000 years
    # Short ranges at the ends of the calendar: the hour scan would overflow.
    ("start=0001-01-01T00:00:00&end=0001-01-01T00:01:00", 400),
    ("start=9999-12-31T23:59:00&end=9999-12-31T23:59:30", 400),
    ("start=9999-12-31T23:00:00", 400),
    ("start=2026-11-28T20:00:00", 400),  # live, but two hours ahead of now
    ("start=2026-11-28T14:00:00+01:00", 400),  # '+' is a space in a query
    ("start=%00", 400),
    ("start=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-11-28", 400),  # full-width digits
    ("start=" + "9" * 5000, 400),
    ("start=2026-11-28T14:00:00&start=x", 200),  # the first one counts
    ("end=2026-11-28T14:00:05&start=", 200),
]


def check(status, body, what):
    assert status != 500, f"{what}: {body[:200]!r}"
    assert 200 <= status < 500, f"{what}: {status} {body[:200]!r}"
    assert b"SECRET" not in body, what
    assert b"Traceback" not in body and b"<html" not in body.lower(), what


def test_hostile_paths_test_client(hostile_store):
    store_dir, outside, temp = hostile_store
    client = create_app(store_dir, now=lambda: NOW).test_client()
    for path in hostile_paths(outside, temp):
        response = client.get(path)
        check(response.status_code, response.data, path)
        assert response.status_code >= 400, path
        assert response.headers["Access-Control-Allow-Origin"] == "*", path


@pytest.mark.parametrize("route", ["/playlist/chan/source.m3u8", "/playlist/chan.m3u8"])
def test_bad_times(client, route):
    for query, status in BAD_QUERIES:
        response = client.get(f"{route}?{query}")
        check(response.status_code, response.data, query)
        assert response.status_code == status, (query, response.data)
        if status == 400:
            body = response.get_data(as_text=True)
            assert body.count("\n") == 1 and len(body) < 300, body


def raw_get(port, target):
    """Send `GET <target>` as raw bytes; return (status, body)."""
    sock = gevent.socket.create_connection(("127.0.0.1", port))
    try:
        request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(request)
        chunks = []
        with gevent.Timeout(RAW_TIMEOUT):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    finally:
        sock.close()
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_hostile_paths_real_server(hostile_store):
    store_dir, outside, temp = hostile_store
    server = Server(create_app(store_dir, now=lambda: NOW), "127.0.0.1", 0)
    port = server.start()
    try:
        targets = [p.encode("utf-8") for p in hostile_paths(outside, temp)]
        targets += [
            b"/segments/../../../../secret.txt",
            b"/../../../../etc/passwd",
            b"/files/\xff\xfe",
            b"/files/chan/source/" + HOUR.encode() + b"/..\\..\\secret.txt",
            b"http://127.0.0.1/files/%2e%2e",
            b"/playlist/chan/source.m3u8?start=%ff%fe",
            b"/playlist/chan/source.m3u8?start=\xff&end=\x00",
            b"/playlist/chan.m3u8?" + b"start=2026-11-28T14:00:00&" * 200,
        ]
        targets += [f"/playlist/chan/source.m3u8?{q}".encode() for q, _ in BAD_QUERIES]
        for target in targets:
            status, body = raw_get(port, target)
            check(status, body, target)
        # The server is still well after all that.
        status, body = raw_get(port, b"/files")
        assert (status, body) == (200, b'["chan"]\n')
    finally:
        server.close(timeout=1)


def test_hostile_segment_names_are_never_listed_or_served(store_dir, client):
    """Names a peer could spread: a segment lasting for ever, and an hour in 1970."""
    forever = "00:00.000000-999999999999.000-full-" + "A" * 43 + ".ts"
    with open(os.path.join(store_dir, "chan", "source", HOUR, forever), "wb") as f:
        f.write(b"x")
    old_hour = "1970-01-01T00"
    os.makedirs(os.path.join(store_dir, "chan", "source", old_hour))
    with open(os.path.join(store_dir, "chan", "source", old_hour, GOOD), "wb") as f:
        f.write(b"x")
    assert client.get("/files/chan/source").json == ["2026-11-28T13", HOUR]
    assert forever not in client.get(f"/files/chan/source/{HOUR}").json
    for query in ("", "?start=2026-11-28T13:59:50&end=2026-11-28T14:00:10"):
        response = client.get(f"/playlist/chan/source.m3u8{query}")
        assert response.status_code == 200, response.data
        assert b"999999999999" not in response.data and b"1970" not in response.data
    assert client.get("/playlist/chan.m3u8").status_code == 200
    for url in (f"/segments/chan/source/{HOUR}/{forever}", f"/files/chan/source/{old_hour}"):
        response = client.get(url)
        check(response.status_code, response.data, url)
        assert response.status_code == 400, url
