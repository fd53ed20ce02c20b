"""The peer client's connections: kept alive and reused, replaced when the peer drops them.

A pass over an hour is hundreds of requests to one peer; each new connection
costs a TCP handshake (more across a WAN), so they are kept alive, and one the
peer has closed while idle must be noticed before it is used.
"""

import datetime

import gevent
import gevent.server

from backfiller import client
from backfiller.client import PeerClient, PeerError
from backfiller.main import PeerWorker
from backfiller.plan import peer_from_url
from common.segments import UTC, format_hour, parse_segment_path
from tests.backfiller.peers import FakePeer, fake_name, media, put_segment, store_files

S = datetime.timedelta(seconds=1)
T0 = datetime.datetime(2026, 1, 10, 10, 0, tzinfo=UTC)


def test_connections_are_kept_alive_and_reused(servers, tmp_path, metrics):
    peer_dir = tmp_path / "peer"
    for i in range(12):
        put_segment(peer_dir, "chan", "source", T0 + 2 * i * S)
    ports = []
    peer = FakePeer(peer_dir)

    def app(environ, start_response):
        ports.append(environ["REMOTE_PORT"])
        return peer(environ, start_response)

    url = servers.serve(app)
    worker = PeerWorker(peer_from_url(url), str(tmp_path / "local"), ["chan"], ["source"],
                        metrics=metrics, concurrency=2)  # fmt: skip
    worker.run(once=True)
    assert store_files(tmp_path / "local") == store_files(peer_dir)
    assert len(ports) == 2 + 12  # the hours, the hour, and every segment
    assert len(set(ports)) <= 3  # at most concurrency (+1 kept for the listings)


def _one_answer_then_close(sock, address):
    """Answer one request as HTTP/1.1 keep-alive would, then close the connection while idle."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += sock.recv(4096)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2\r\n\r\n[]")  # fmt: skip
    gevent.sleep(0.05)
    sock.close()


def test_a_connection_the_peer_closed_while_idle_is_replaced():
    server = gevent.server.StreamServer(("127.0.0.1", 0), _one_answer_then_close)
    server.start()
    client = PeerClient(peer_from_url(f"http://127.0.0.1:{server.server_port}"), 1)
    try:
        assert client.get_list("files", "chan", "source") == []
        gevent.sleep(0.2)  # the peer closes the kept connection meanwhile
        try:
            assert client.get_list("files", "chan", "source") == []
        except PeerError as e:
            raise AssertionError(f"the dropped connection was reused: {e}") from None
    finally:
        client.close()
        server.stop()


def test_a_peer_url_with_a_bad_port_is_a_connection_error(tmp_path, metrics, registry):
    peer = peer_from_url("http://127.0.0.1:notaport")
    worker = PeerWorker(peer, str(tmp_path), ["chan"], ["source"], metrics=metrics)
    worker.run(once=True)
    assert worker.errors == 1
    labels = {"peer": peer.name, "kind": "connection"}
    assert registry.get_sample_value("backfiller_errors_total", labels) == 1


def test_storing_a_segment_never_yields_so_a_kill_cannot_land_halfway(tmp_path):
    # A SIGTERM kills the fetches at their next yield to the hub. Storing a
    # body has none, so it ends renamed or removed before the kill lands.
    data = media(b"whole")
    name = fake_name(T0, data)
    segment = parse_segment_path(name, channel="chan", quality="source", hour=format_hour(T0))
    ran = []
    gevent.spawn(ran.append, "other greenlet")  # runs at this greenlet's first yield
    size = client.store_verified(str(tmp_path), segment, data, "http://peer/x")
    assert ran == []
    assert size == len(data)
    assert store_files(tmp_path) == {f"chan/source/{segment.hour}/{name}": data}
    gevent.sleep(0)
    assert ran == ["other greenlet"]
