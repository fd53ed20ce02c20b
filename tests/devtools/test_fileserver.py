"""The uploads file server run-local uses: files yes, anything else no."""

import os

import pytest
import requests

from devtools.fileserver import serve


@pytest.fixture
def server(tmp_path):
    (tmp_path / "clip.ts").write_bytes(bytes(range(256)) * 4)
    (tmp_path / ".spooling.ts").write_bytes(b"half a cut")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.ts").write_bytes(b"inner")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_bytes(b"secret")
    os.symlink(outside, tmp_path / "link.ts")
    s = serve(tmp_path)
    yield f"http://127.0.0.1:{s.server_port}"
    s.shutdown()
    s.server_close()


def test_serves_a_file_whole_and_by_range(server):
    whole = requests.get(f"{server}/clip.ts", timeout=5)
    assert whole.status_code == 200
    assert whole.content == bytes(range(256)) * 4
    assert whole.headers["Content-Type"] == "video/mp2t"
    part = requests.get(f"{server}/clip.ts", headers={"Range": "bytes=10-19"}, timeout=5)
    assert part.status_code == 206
    assert part.content == bytes(range(10, 20))
    assert part.headers["Content-Range"] == "bytes 10-19/1024"
    tail = requests.get(f"{server}/clip.ts", headers={"Range": "bytes=-4"}, timeout=5)
    assert tail.content == bytes(range(252, 256))
    past = requests.get(f"{server}/clip.ts", headers={"Range": "bytes=2000-"}, timeout=5)
    assert past.status_code == 416


@pytest.mark.parametrize(
    "path",
    ["/", "/.spooling.ts", "/sub/inner.ts", "/sub", "/link.ts", "/../x", "/%2e%2e/x", "/nope.ts"],
)
def test_refuses_everything_but_a_plain_file(server, path):
    response = requests.get(server + path, timeout=5)
    assert response.status_code == 404
    assert b"secret" not in response.content
    assert b"half a cut" not in response.content
