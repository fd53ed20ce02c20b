"""The operator's commands: `cutter init-db`, `submit`, `list`, `show`, `cancel`, `reset`,
`mark-done`, and `cutter editors add|list|revoke`.

Each command is a function of the parsed arguments returning the exit
status, registered on its subparser with `set_defaults(func=...)`; `main.py`
adds the `run` command (the service) beside them and calls `args.func(args)`.

How they fail: a refused change (wrong state, bad fields) prints one line
and exits 1; an unreachable database prints one line and exits 2. Nothing is
retried: an operator at a shell sees the failure at once.
"""

import json
import sys

from common.database import CONNECTION_ERRORS, Database, one_line

from .editors import Editors
from .jobs import BadJob, JobError, Jobs, State, format_time

DEFAULT_DSN = "dbname=streamvault"


def add_db(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--db",
        default=DEFAULT_DSN,
        help=f"PostgreSQL connection string (libpq DSN or URL; default: {DEFAULT_DSN!r}, "
        "which uses the local socket as the current user). Visible in `ps`: for a DSN "
        "with a password, use --db-file",
    )
    group.add_argument(
        "--db-file",
        metavar="PATH",
        help="read the connection string from this file (mode 0600; surrounding whitespace "
        "ignored), so a password stays out of the command line",
    )


def dsn(args):
    """The DSN from --db-file (read now) or --db. ValueError with a one-line reason."""
    if not getattr(args, "db_file", None):
        return args.db
    try:
        with open(args.db_file) as f:
            text = f.read().strip()
    except OSError as e:
        raise ValueError(f"cannot read --db-file {args.db_file}: {e.strerror}") from None
    if not text:
        raise ValueError(f"--db-file {args.db_file} is empty")
    return text


def _print_job(job, as_json=False):
    if as_json:
        print(json.dumps(job.to_json()))
        return
    for key, value in job.to_json().items():
        print(f"{key:14} {'' if value is None else value}")


def init_db(jobs, args):
    jobs.init_schema()
    print("schema is up to date")


def submit(jobs, args):
    job = jobs.submit(
        state=State.UNEDITED if args.draft else State.EDITED,
        channel=args.channel,
        quality=args.quality,
        start=args.start,
        end=args.end,
        title=args.title,
        description=args.description,
        allow_holes=args.allow_holes,
        upload_location=args.location,
    )
    print(job.id)


def list_jobs(jobs, args):
    found = jobs.list(args.state or None, args.limit)
    if args.json:
        for job in found:
            print(json.dumps(job.to_json()))
        return
    print(f"{'ID':>6}  {'STATE':11}  {'CHANNEL/QUALITY':20}  {'START':27}  {'SECS':>8}  "
          f"{'LOCATION':10}  TITLE / ERROR")  # fmt: skip
    for job in found:
        detail = job.title + (f"  [{job.error}]" if job.error else "")
        if job.uploader:
            detail += f"  (held by {job.uploader})"
        print(
            f"{job.id:>6}  {job.state.value:11}  {job.channel + '/' + job.quality:20}  "
            f"{format_time(job.start):27}  {job.duration.total_seconds():8.3f}  "
            f"{job.upload_location:10}  {detail}"
        )


def show(jobs, args):
    _print_job(jobs.get(args.id), args.json)


def cancel(jobs, args):
    print(f"job {args.id} is now {jobs.cancel(args.id).state}")


def reset(jobs, args):
    print(f"job {args.id} is now {jobs.reset(args.id).state}")


def mark_done(jobs, args):
    job = jobs.mark_done(args.id, args.video_id, args.video_link)
    print(f"job {args.id} is now {job.state}: {job.video_link}")


def editors_add(jobs, args):
    token = Editors(jobs.db).add(args.name)
    print(f"editor {args.name} added; their token (shown only this once):", file=sys.stderr)
    print(token)


def editors_list(jobs, args):
    print(f"{'NAME':24}  {'ADDED':24}  {'SESSIONS':>8}  STATUS")
    for editor in Editors(jobs.db).list():
        status = f"revoked {format_time(editor.revoked_at)}" if editor.revoked_at else "active"
        print(
            f"{editor.name:24}  {format_time(editor.created_at):24}  {editor.sessions:8}  {status}"
        )


def editors_revoke(jobs, args):
    Editors(jobs.db).revoke(args.name)
    print(f"editor {args.name} revoked; their sessions are ended")


def with_jobs(command):
    """Wrap `command(jobs, args)` as `func(args)`: open the database, report failures."""

    def run(args):
        try:
            jobs = Jobs(Database(dsn(args)))
        except ValueError as e:
            print(f"cutter {args.command}: {e}", file=sys.stderr)
            return 2
        try:
            command(jobs, args)
        except (JobError, BadJob) as e:
            print(f"cutter {args.command}: {e}", file=sys.stderr)
            return 1
        except CONNECTION_ERRORS as e:
            print(
                f"cutter {args.command}: cannot reach the database: {one_line(e)}",
                file=sys.stderr,
            )
            return 2
        finally:
            jobs.db.close()
        return 0

    return run


def add_commands(commands):
    """Add the operator's subcommands to `commands` (an argparse subparsers object)."""
    p = commands.add_parser("init-db", help="create or update the schema (idempotent)")
    add_db(p)
    p.set_defaults(func=with_jobs(init_db))

    p = commands.add_parser("submit", help="submit a cut job; prints its id")
    add_db(p)
    p.add_argument("--channel", required=True)
    p.add_argument("--quality", required=True)
    p.add_argument("--start", required=True, help="ISO 8601 UTC, e.g. 2026-11-28T13:50:07.300")
    p.add_argument("--end", required=True, help="ISO 8601 UTC")
    p.add_argument("--title", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--allow-holes", action="store_true", help="cut even if data is missing")
    p.add_argument("--location", default="default", help="upload location name (default: default)")
    p.add_argument("--draft", action="store_true", help="save as UNEDITED (not cut until reset)")
    p.set_defaults(func=with_jobs(submit))

    p = commands.add_parser("list", help="list jobs, newest first")
    add_db(p)
    p.add_argument("--state", action="append", choices=[s.value for s in State], default=[])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=with_jobs(list_jobs))

    for name, command, help in (
        ("show", show, "show one job"),
        ("cancel", cancel, "take back an EDITED or CLAIMED job (to UNEDITED)"),
        ("reset", reset, "operator: back to EDITED (a stuck CLAIMED job, or a FINALIZING one "
                         "once you have checked that no video was made)"),
    ):  # fmt: skip
        p = commands.add_parser(name, help=help)
        add_db(p)
        p.add_argument("id", type=int)
        if name == "show":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=with_jobs(command))

    p = commands.add_parser(
        "mark-done",
        help="operator: record the video a FINALIZING job made after all (its cutter died "
        "before saying so)",
    )
    add_db(p)
    p.add_argument("id", type=int)
    p.add_argument("--video-id", required=True, help="e.g. the YouTube video id, or file name")
    p.add_argument("--video-link", required=True, help="the video's URL")
    p.set_defaults(func=with_jobs(mark_done))

    p = commands.add_parser("editors", help="editor accounts: add, list, revoke")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="add an editor; prints their sign-in token once")
    add_db(a)
    a.add_argument("name", help="letters, digits, _ . @ or - (e.g. an e-mail address)")
    a.set_defaults(func=with_jobs(editors_add))
    a = actions.add_parser("list", help="list editors")
    add_db(a)
    a.set_defaults(func=with_jobs(editors_list))
    a = actions.add_parser("revoke", help="revoke an editor's token and end their sessions")
    add_db(a)
    a.add_argument("name")
    a.set_defaults(func=with_jobs(editors_revoke))
