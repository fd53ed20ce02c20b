"""Each node's directories, ports and service command lines, and the port plan."""

import os
import sys

from devtools.ports import free_ports

from .children import Failed, port_in_use

# Ports of node N (from 1) start at port_base + (N - 1) * NODE_PORT_STRIDE; the
# offsets keep the services' usual numbers (docs/OPERATIONS.md) for node 1.
# (Offsets 5 to 8 are free: backdoors are Unix sockets, not ports.)
NODE_PORT_STRIDE = 10
PORT_OFFSETS = {
    "restreamer": 0,
    "downloader": 1,
    "backfiller": 2,
    "cutter": 3,
    "uploads": 4,
}
TESTSTREAM_PORT_OFFSET = 9  # in node 1's block

UPLOAD_LOCATION = "local"
SOCKET_PATH_MAX = 107  # bytes, sun_path on Linux
SERVICES = ("restreamer", "downloader", "backfiller", "cutter")
# The backfiller leaves segments younger than this to the local downloader. Its
# default (120 s) suits real streams; on one machine both nodes read the same
# origin, so a short one lets replication show within a minute.
RECENT_CUTOFF = 10  # seconds


class Node:
    """One node's directories, ports and service command lines."""

    def __init__(self, index, data_dir, ports, host, backdoor=False):
        self.index = index
        self.name = f"node{index}"
        self.dir = os.path.join(data_dir, self.name)
        self.backdoor = backdoor
        self.store = os.path.join(self.dir, "store")
        self.uploads = os.path.join(self.dir, "uploads")
        self.ports = ports
        self.host = host
        self.peers = []

    @property
    def url(self):
        """The node's restreamer."""
        return f"http://{self.host}:{self.ports['restreamer']}"

    def url_for(self, service):
        """Where `service` answers (its /metrics, and the cutter's job API)."""
        return f"http://{self.host}:{self.ports[service]}"

    def health_url(self, service):
        """A URL that answers 200 once `service` is up."""
        return self.url_for(service) + "/metrics"

    def backdoor_socket(self, service):
        """Where `service`'s backdoor listens (a Unix socket, mode 0600), if it is on."""
        return os.path.join(self.dir, f"{service}.backdoor") if self.backdoor else None

    def services(self):
        """The services this node runs, in the order the banner lists them."""
        return [s for s in SERVICES if s != "backfiller" or self.peers]

    def commands(self, channels, qualities, dsn):
        """{service: argv}, in start order."""
        python = [sys.executable, "-m"]
        names = [name for name, _ in channels]
        commands = {
            "restreamer": python + [
                "restreamer", "--base-dir", self.store,
                "--host", self.host, "--port", str(self.ports["restreamer"]),
            ],
            "cutter": python + [
                "cutter", "run", "--db", dsn, "--base-dir", self.store, "--name", self.name,
                "--location",
                f"{UPLOAD_LOCATION}=local:{self.uploads},url_prefix={self.url_for('uploads')}/",
                "--metrics-port", str(self.ports["cutter"]),
                # The editor page is served by the restreamer, another origin.
                "--editor-origin", self.url,
            ],
            "downloader": python + [
                "downloader", *[spec for _, spec in channels],
                "--qualities", ",".join(qualities), "--base-dir", self.store,
                "--metrics-port", str(self.ports["downloader"]),
            ],
        }  # fmt: skip
        if self.peers:
            commands["backfiller"] = python + [
                "backfiller", "--base-dir", self.store,
                "--channels", ",".join(names), "--qualities", ",".join(qualities),
                "--nodes", ",".join(self.peers), "--recent-cutoff", str(RECENT_CUTOFF),
                "--metrics-port", str(self.ports["backfiller"]),
            ]  # fmt: skip
        for service, argv in commands.items():
            # Every listening socket where --host says (the restreamer has it above).
            if service != "restreamer":
                argv += ["--host", self.host]
            if self.backdoor:
                argv += ["--backdoor-socket", self.backdoor_socket(service)]
        return commands

    def uploads_server(self):
        """argv of the server that serves the uploads over HTTP, as nginx does in Docker.

        So the job's video link is an http:// URL the editor page can open.
        """
        return [
            sys.executable, "-m", "devtools.fileserver", "--host", self.host,
            "--port", str(self.ports["uploads"]), self.uploads,
        ]  # fmt: skip


def plan_nodes(data_dir, count, port_base, host, peers, test_stream, backdoor=False):
    """(nodes, test stream port) for `count` nodes; Failed if a port is in use.

    `port_base` 0 takes any free ports; otherwise node N's block starts at
    `port_base + (N - 1) * NODE_PORT_STRIDE`. Every node backfills from the
    others and from `peers`.
    """
    needed = len(PORT_OFFSETS) * count + 1
    if port_base == 0:
        ports = free_ports(needed, host)
        teststream_port = ports.pop()
        blocks = [
            dict(zip(PORT_OFFSETS, ports[i * len(PORT_OFFSETS) :], strict=False))
            for i in range(count)
        ]
    else:
        blocks = [
            {k: port_base + i * NODE_PORT_STRIDE + off for k, off in PORT_OFFSETS.items()}
            for i in range(count)
        ]
        teststream_port = port_base + TESTSTREAM_PORT_OFFSET
        wanted = [p for block in blocks for p in block.values()]
        if test_stream:
            wanted.append(teststream_port)
        busy = [p for p in wanted if port_in_use(p, host)]
        if busy:
            raise Failed(
                f"port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} already "
                "in use (another ./run-local?): choose others with --port-base N, or "
                "--port-base 0 for any free ones"
            )
    nodes = [Node(i + 1, data_dir, block, host, backdoor) for i, block in enumerate(blocks)]
    if backdoor:
        longest = max((node.backdoor_socket(s) for node in nodes for s in SERVICES), key=len)
        if len(longest.encode()) > SOCKET_PATH_MAX:
            raise Failed(
                f"data directory path too long for the backdoor sockets ({longest}): "
                "use a shorter --data-dir"
            )
    for node in nodes:
        node.peers = [n.url for n in nodes if n is not node] + list(peers)
    return nodes, teststream_port
