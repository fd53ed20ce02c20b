"""./run-local: a whole streamvault node on this machine, from the checkout, no Docker.

Starts, as child processes of this one:
- the built-in test stream (`devtools.teststream`: a live HLS origin on 127.0.0.1
  made by ffmpeg), unless `--channel` names real channels;
- per node: downloader, restreamer, cutter, and a backfiller when the node has
  peers (`--peer URL`, or the other node with `--nodes 2`);
- a PostgreSQL for the cutters: the system one when it answers (a database of
  its own per data directory), else a private cluster under the data directory.

Everything lives under `--data-dir` (default ./data): each node's store and
uploads, the logs of every process, the private cluster.

How it fails, and what it does about it:
- A port already in use: refused before anything starts, naming the port and
  `--port-base`. A service that exits or does not answer while starting: every
  process is stopped, and the last lines of its log are shown.
- A service that dies while running: the same, exit status 1. Nothing restarts
  on its own: this is a demonstration and a development tool, and a silent
  restart would hide the bug.
- Ctrl-C or SIGTERM: every service gets SIGTERM at once (each stops within a
  few seconds, leaving no temp files), then the test stream, then a private
  PostgreSQL. Each child runs in a session of its own, so whatever it started
  (ffmpeg) goes with it: stragglers get SIGKILL by process group. Children also
  get SIGTERM if this process dies without cleaning up (PR_SET_PDEATHSIG).
  Then a summary of what was recorded.

Modules: `cli` (flags; imports nothing heavy, so `--help` works before the
packages are installed), `runner` (starting, watching, stopping), `children`
(child processes), `nodes` (ports and command lines), `database` (PostgreSQL),
`report` (the banner and the summary). Run as `python -m tools.run_local`.
"""
