"""A minimal service on the shared lifecycle, run as a subprocess by the tests."""

import gevent.monkey

gevent.monkey.patch_all()

import sys  # noqa: E402

from common.service import Stoppable, base_parser, run_service, setup_logging  # noqa: E402


class Counter(Stoppable):
    """Counts ticks until stopped; the tests read `count` through the backdoor."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def run(self):
        while not self.stopping.wait(0.01):
            self.count += 1


def main():
    args = base_parser("sample", "a sample service", metrics_port=0).parse_args()
    setup_logging()
    counter = Counter()
    sys.exit(
        run_service(
            "sample",
            [counter],
            metrics_port=args.metrics_port,
            host=args.host,
            backdoor_port=args.backdoor_port,
            backdoor_socket=args.backdoor_socket,
            backdoor_locals={"counter": counter},
        )
    )


if __name__ == "__main__":
    main()
