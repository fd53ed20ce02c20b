import gevent
import requests

from common.server import WSGIServer


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_serves_until_stopped_and_then_refuses():
    server = WSGIServer(hello, "127.0.0.1", 0, name="test")
    runner = gevent.spawn(server.run)
    port = server.start()
    assert server.start() == port  # idempotent
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "hello"
    server.stop()
    runner.join(timeout=5)
    assert runner.dead and runner.exception is None
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("the server still answers after stop")
