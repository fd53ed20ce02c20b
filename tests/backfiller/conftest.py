import pytest

from backfiller import client, main
from tests.backfiller.peers import Servers


@pytest.fixture
def servers():
    servers = Servers()
    yield servers
    servers.close()


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    """Short waits, so retries and reloads cost milliseconds.

    Timeouts stay generous (a loaded CI machine must never time out an honest
    request); tests of peers that hang ask for `short_timeouts`.
    """
    monkeypatch.setattr(client, "LIST_TIMEOUTS", (5, 10))
    monkeypatch.setattr(client, "FETCH_TIMEOUTS", (5, 10))
    monkeypatch.setattr(main, "BACKOFF", (0.02, 0.1))
    monkeypatch.setattr(main, "PASS_INTERVAL", 0.02)
    monkeypatch.setattr(main, "NODE_FILE_INTERVAL", 0.02)
    monkeypatch.setattr(main, "NODE_FILE_POLL", 0.02)


@pytest.fixture
def metrics(registry):
    return main.Metrics(registry)


@pytest.fixture
def short_timeouts(monkeypatch):
    """Give up on a silent peer within a second (the whole-request deadline)."""
    monkeypatch.setattr(client, "LIST_TIMEOUTS", (1, 1))
    monkeypatch.setattr(client, "FETCH_TIMEOUTS", (1, 1))
