"""Helpers for load runs beside real service processes (tests and `bench/` share them).

- `children(pid)`: a process's ffmpeg children, read from /proc (the count a
  cut bound must keep flat);
- `client_addresses(count)`: source addresses for load clients, so that a
  per-client bound does not hide a per-node one;
- `request(port, path, source)`: one GET on a new connection from `source`,
  its body read and counted.
"""

import http.client
import os
import socket

# A cut under load may queue behind others: long enough for the slowest.
REQUEST_TIMEOUT = 60  # seconds


def children(pid, name="ffmpeg"):
    """Pids of `pid`'s live direct children called `name`, from /proc.

    A process gone between the listing and the read is skipped, and so is a
    zombie (exited, not yet reaped: it holds no CPU or memory, and a cut's
    slot may be free before its ffmpeg is reaped), so the count is of the
    processes running at that moment.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and comm == name and state != "Z":
            found.append(int(entry))
    return found


def client_addresses(count):
    """127.0.0.2… if this machine lets us bind them (Linux routes all of 127/8), else 127.0.0.1."""
    addresses = [f"127.0.0.{2 + i}" for i in range(count)]
    try:
        for address in addresses:
            with socket.socket() as s:
                s.bind((address, 0))
    except OSError:
        return ["127.0.0.1"]
    return addresses


def request(port, path, source="127.0.0.1", timeout=REQUEST_TIMEOUT):
    """(status, headers, body length) of GET `path` on 127.0.0.1:`port`, on a new
    connection from `source` (a loopback address: the client's identity)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        size = 0
        while chunk := response.read(65536):
            size += len(chunk)
        return response.status, response.headers, size
    finally:
        connection.close()
