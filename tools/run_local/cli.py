"""run-local's flags and its `main`.

Imports nothing beyond the standard library at module level, so `--help` works
with any Python 3 before tools/setup has installed the project's packages.
"""

import argparse
import signal

DEFAULT_PORT_BASE = 8000


def parse_channel(text):
    """`NAME` (Twitch) or `NAME=URL` (any HLS) → (name, spec for the downloader).

    Checked by the downloader's own parser, so run-local refuses exactly what
    the downloader would.
    """
    from downloader.providers import provider_for

    try:
        name, _ = provider_for(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name, text


def _qualities(text):
    return [q for q in text.split(",") if q]


# --test-stream NAME → the test stream's --container and --codec.
TEST_STREAM_FORMATS = {
    "ts-h264": ("ts", "h264"),
    "fmp4-h264": ("fmp4", "h264"),
    "fmp4-hevc": ("fmp4", "hevc"),
    "fmp4-av1": ("fmp4", "av1"),
}
TEST_STREAMS = tuple(TEST_STREAM_FORMATS)


def parse_args(argv=None):
    """run-local's command line → argparse.Namespace."""
    parser = argparse.ArgumentParser(
        prog="run-local",
        description="Run a whole streamvault node on this machine, on a built-in test stream "
        "or real channels. Ctrl-C stops it.",
    )
    parser.add_argument(
        "--data-dir", default="data",
        help="where stores, uploads, logs and a private PostgreSQL live (default: ./data)",
    )  # fmt: skip
    parser.add_argument(
        "--channel", action="append", type=parse_channel, metavar="NAME[=URL]",
        help="record a Twitch channel (NAME) or any HLS stream (NAME=URL) instead of the "
        "built-in test stream; repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--test-stream", choices=TEST_STREAMS, default=TEST_STREAMS[0],
        help="the built-in test stream's container and codec: MPEG-TS H.264, or fragmented "
        "MP4 in H.264, HEVC or AV1 as Twitch's enhanced broadcasting serves them "
        f"(default: {TEST_STREAMS[0]})",
    )  # fmt: skip
    parser.add_argument(
        "--qualities", type=_qualities,
        help="qualities to record, comma-separated (default: the test stream's two, or "
        "'source' for real channels)",
    )  # fmt: skip
    parser.add_argument(
        "--peer", action="append", default=[], metavar="URL",
        help="another node's restreamer to backfill from; repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--nodes", type=int, choices=(1, 2), default=1,
        help="2 runs a second node that backfills from the first and vice versa (default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--port-base", type=int, default=DEFAULT_PORT_BASE,
        help="node 1 uses ports N (restreamer) to N+9, node 2 N+10 to N+19; 0 picks free "
        f"ports (default: {DEFAULT_PORT_BASE})",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address every service listens on (their APIs, /metrics, the uploads) and is "
        "reached at; 0.0.0.0 opens them to the network (default: 127.0.0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--backdoor", action="store_true",
        help="open each service's backdoor (a Python shell inside it) on a Unix socket "
        "(mode 0600) under the node's directory; the banner says how to connect "
        "(default: off)",
    )  # fmt: skip
    parser.add_argument(
        "--db", choices=("auto", "system", "private"), default="auto",
        help="PostgreSQL for the jobs: the system one if it answers, else a private one "
        "under the data directory (default: auto)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None):
    """Run until Ctrl-C or SIGTERM; returns the exit status (1 if starting failed)."""
    args = parse_args(argv)
    from .children import Failed, Interrupted, progress, say
    from .report import banner
    from .runner import RunLocal

    run = RunLocal(args)

    def on_signal(signum, frame):
        run.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        run.start()
        banner(run)
        run.run()
        progress("stopping")
    except Interrupted:
        progress("interrupted while starting; stopping")
    except Failed as e:
        say(f"run-local: {e}")
        status = 1
    except Exception:
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        # A second Ctrl-C while stopping must not leave half the children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.stop()
    return status
