"""A telnet Python shell inside a running service, for inspecting live state.

`telnet 127.0.0.1 PORT` gives a prompt with the service's main objects in
scope, plus `set_log_level("DEBUG")`. Always bound to 127.0.0.1: anyone who
reaches it can run any code as the service, so it is never put on a public
interface (in Docker, reach it with `docker compose exec SERVICE telnet ...`).
Off unless a port is given.
"""

import logging

import gevent.backdoor

logger = logging.getLogger(__name__)

BACKDOOR_HOST = "127.0.0.1"


def set_log_level(level):
    """Change the root log level of the running process, e.g. `set_log_level("DEBUG")`."""
    logging.getLogger().setLevel(level)
    return logging.getLevelName(logging.getLogger().level)


def start_backdoor(port, local_objects=None):
    """Start the backdoor server on 127.0.0.1:port; returns it (or None if port is 0)."""
    if not port:
        return None
    scope = {"set_log_level": set_log_level, "logging": logging}
    scope.update(local_objects or {})
    server = gevent.backdoor.BackdoorServer(
        (BACKDOOR_HOST, port),
        locals=scope,
        banner="streamvault backdoor: objects in scope: " + ", ".join(sorted(scope)),
    )
    server.start()
    logger.info("Backdoor listening on %s:%d", BACKDOOR_HOST, server.server_port)
    return server
