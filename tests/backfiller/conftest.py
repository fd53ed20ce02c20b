import prometheus_client
import pytest

from backfiller import main
from tests.backfiller.peers import Servers


@pytest.fixture
def servers():
    servers = Servers()
    yield servers
    servers.close()


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    """Short timeouts and waits, so hostile peers and retries cost milliseconds."""
    monkeypatch.setattr(main, "LIST_TIMEOUTS", (0.5, 1))
    monkeypatch.setattr(main, "FETCH_TIMEOUTS", (0.5, 1))
    monkeypatch.setattr(main, "BACKOFF", (0.02, 0.1))
    monkeypatch.setattr(main, "PASS_INTERVAL", 0.02)
    monkeypatch.setattr(main, "NODE_FILE_INTERVAL", 0.02)


@pytest.fixture
def registry():
    return prometheus_client.CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return main.Metrics(registry)
