"""Benchmark: from pressing "submit" to a DONE job, woken by NOTIFY vs by polling.

    .venv/bin/python -m bench.cutter [--jobs 8] [--poll 2] [--seconds 5]

A cutter LISTENs for new jobs and so starts on one the moment it is submitted;
the baseline is the same cutter polling every `--poll` seconds, as a cutter
without notifications must. Both run in this process against a fresh
PostgreSQL database (dropped afterwards) and a small store of test media, on
one local upload location, with the real cut. Jobs are submitted one at a
time, at a random moment after the previous one is done, as a volunteer
would. Times come from the database's own timestamps: `created_at` (submit),
`claimed_at`, `done_at`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import gevent  # noqa: E402
import prometheus_client  # noqa: E402
import psycopg2  # noqa: E402

from cutter.jobs import Jobs, State  # noqa: E402
from cutter.main import Cutter  # noqa: E402
from cutter.upload_backends import LocalBackend  # noqa: E402
from tests.media import add_to_store, make_media  # noqa: E402

START = datetime.datetime(2026, 11, 28, 13, 59, 42, tzinfo=datetime.UTC)


def admin(sql):
    conn = psycopg2.connect("dbname=postgres")
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def run_mode(dsn, store, outdir, listen, poll, count, seconds):
    jobs = Jobs(dsn)
    backend = LocalBackend("clips", outdir)
    cutter = Cutter(
        jobs, store, "bench", {"clips": backend}, prometheus_client.CollectorRegistry(),
        poll_interval=poll, listen=listen,
    )  # fmt: skip
    runner = gevent.spawn(cutter.run)
    done = []
    try:
        gevent.sleep(1)  # let it start (and LISTEN) before the first submit
        for i in range(count):
            gevent.sleep(random.uniform(0, poll))
            offset = 1 + (i % 4) * 5.3
            job = jobs.submit(
                channel="bench", quality="source", title=f"bench {i}", upload_location="clips",
                start=START + datetime.timedelta(seconds=offset),
                end=START + datetime.timedelta(seconds=offset + seconds),
            )  # fmt: skip
            while (current := jobs.get(job.id)).state != State.DONE:
                if runner.dead:
                    raise RuntimeError(f"the cutter stopped: {runner.exception}")
                gevent.sleep(0.01)
            done.append(current)
    finally:
        cutter.stop()
        runner.join(timeout=10)
        jobs.db.close()
    return done


def summary(values):
    return f"{statistics.median(values):6.3f} / {max(values):6.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs per mode (default 8)")
    parser.add_argument("--poll", type=float, default=2, help="baseline poll interval, s")
    parser.add_argument("--seconds", type=float, default=5, help="length of each cut, s")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-cutter-")
    print("Making test media...", file=sys.stderr)
    media = make_media(os.path.join(work, "media"), seconds=30)
    store = os.path.join(work, "store")
    add_to_store(store, "bench", "source", START, media)
    name = f"streamvault_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        Jobs(f"dbname={name}").init_schema()
        results = {}
        for label, listen in ((f"poll every {args.poll:g} s (baseline)", False),
                              ("LISTEN/NOTIFY", True)):  # fmt: skip
            print(f"Running: {label}...", file=sys.stderr)
            results[label] = run_mode(
                f"dbname={name}", store, os.path.join(work, f"out-{listen}"), listen,
                args.poll, args.jobs, args.seconds,
            )  # fmt: skip
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.jobs} jobs of {args.seconds:g} s each, one at a time; seconds, median / max\n")
    print("| mode | submit → claimed | claimed → done (cut + upload) | submit → done |")
    print("|---|---|---|---|")
    for label, done in results.items():
        wait = [(j.claimed_at - j.created_at).total_seconds() for j in done]
        work_time = [(j.done_at - j.claimed_at).total_seconds() for j in done]
        total = [(j.done_at - j.created_at).total_seconds() for j in done]
        print(f"| {label} | {summary(wait)} | {summary(work_time)} | {summary(total)} |")


if __name__ == "__main__":
    main()
