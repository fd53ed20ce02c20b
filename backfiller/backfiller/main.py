"""streamvault backfiller: fill a node's store from its peers, verifying every byte.

A skeleton until its own issue lands: it parses the shared flags and runs no workers.
"""

import sys

from common.service import base_parser, run_service, setup_logging


def parse_args(argv=None):
    parser = base_parser("backfiller", __doc__.splitlines()[0], metrics_port=8002)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    sys.exit(
        run_service(
            "backfiller", [], metrics_port=args.metrics_port, backdoor_port=args.backdoor_port
        )
    )
