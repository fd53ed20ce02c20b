import os
import signal
import socket
import subprocess
import sys

import gevent
import pytest
import requests

from common.service import Stoppable, run_service
from tests.util import free_ports, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Generous: on a loaded 2-core machine a fresh interpreter importing gevent
# can take seconds. Only a hang reaches it.
STARTUP_TIMEOUT = 60
TOKEN = "test-token-1234"


@pytest.fixture
def service():
    ports = dict(zip(("backdoor", "metrics"), free_ports(2), strict=True))
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tests.common.sample_service",
            "--backdoor-port", str(ports["backdoor"]),
            "--metrics-port", str(ports["metrics"]), "--host", "127.0.0.1",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        env=dict(os.environ, STREAMVAULT_LOG_LEVEL="INFO", STREAMVAULT_BACKDOOR_TOKEN=TOKEN),
    )  # fmt: skip

    def listening():
        if proc.poll() is not None:
            raise AssertionError(f"service exited early: {proc.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", ports["backdoor"]), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(listening, STARTUP_TIMEOUT, what="the backdoor")
    yield proc, ports
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class Backdoor:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        self.read_prompt(b"token: ")
        self.sock.sendall(TOKEN.encode() + b"\n")
        self.read_prompt()

    def read_prompt(self, prompt=b">>> "):
        while not self.buffer.endswith(prompt):
            chunk = self.sock.recv(4096)
            assert chunk, "backdoor closed the connection"
            self.buffer += chunk
        text, self.buffer = self.buffer[: -len(prompt)], b""
        return text.decode().replace("\r\n", "\n").strip()

    def run(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read_prompt()


def listening_addresses(port):
    """The local addresses with a TCP socket listening on `port` (IPv4 and IPv6)."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, _, state = line.split()[1:4]
                address, hex_port = local.split(":")
                if int(hex_port, 16) == port and state == "0A":  # LISTEN
                    addresses.append(address)
    return addresses


def test_backdoor_reads_and_changes_the_process(service):
    proc, ports = service
    door = Backdoor(ports["backdoor"])
    count = int(door.run("counter.count"))
    wait_for(lambda: int(door.run("counter.count")) > count, STARTUP_TIMEOUT, what="the counter")
    assert door.run("logging.getLogger().level") == "20"
    door.run('set_log_level("DEBUG")')
    assert door.run("logging.getLogger().level") == "10"
    # The service's own metrics show the change too: the process is the same one.
    metrics = requests.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5).text
    assert "log_messages_total" in metrics
    # Bound to 127.0.0.1 alone: nothing listens on another address; and
    # /metrics where --host says.
    assert listening_addresses(ports["backdoor"]) == ["0100007F"]
    assert listening_addresses(ports["metrics"]) == ["0100007F"]


def test_sigterm_exits_zero_quickly(service):
    proc, _ = service
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    stderr = proc.stderr.read().decode()
    assert "got SIGTERM, stopping" in stderr
    assert "sample: stopped" in stderr


class Worker(Stoppable):
    def __init__(self, fail_after=None):
        super().__init__()
        self.fail_after = fail_after
        self.stopped = False

    def run(self):
        if self.fail_after is not None:
            gevent.sleep(self.fail_after)
            raise RuntimeError("worker broke")
        self.stopping.wait()
        self.stopped = True


def test_a_crash_stops_the_others_and_is_raised():
    calm = Worker()
    with pytest.raises(RuntimeError, match="worker broke"):
        run_service("test", [calm, Worker(fail_after=0.01)])
    assert calm.stopped


def test_a_worker_that_ends_stops_the_rest():
    class Done(Stoppable):
        def run(self):
            pass

    calm = Worker()
    assert run_service("test", [calm, Done()]) == 0
    assert calm.stopped


def test_a_stuck_worker_is_killed():
    class Stuck(Stoppable):
        killed = False

        def run(self):
            try:
                gevent.sleep(60)  # ignores stop()
            except gevent.GreenletExit:
                self.killed = True
                raise

    class Done(Stoppable):
        def run(self):
            pass

    stuck = Stuck()
    assert run_service("test", [stuck, Done()], stop_timeout=0.1) == 0
    assert stuck.killed


def test_a_backdoor_port_without_a_token_is_an_error_line_not_a_stop(caplog, monkeypatch):
    monkeypatch.delenv("STREAMVAULT_BACKDOOR_TOKEN", raising=False)

    class Done(Stoppable):
        def run(self):
            pass

    assert run_service("test", [Done()], backdoor_port=free_ports(1)[0]) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and "STREAMVAULT_BACKDOOR_TOKEN" in errors[0], errors
