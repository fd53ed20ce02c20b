"""Free TCP ports, for starting subprocesses that must be told where to listen."""

import socket


def free_ports(count, host="127.0.0.1"):
    """`count` distinct TCP ports on `host` that nothing listened on a moment ago.

    For servers started as subprocesses that must be told their ports; servers
    run in-process bind port 0 and read the port back instead. All sockets stay
    bound until every port is chosen: one closed first could be handed out again.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
