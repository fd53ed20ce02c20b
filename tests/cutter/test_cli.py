"""The job subcommands: `python -m cutter init-db/submit/list/show/cancel/reset`."""

import json
import subprocess
import sys

import pytest

from cutter.jobs import Jobs, State
from cutter.main import main
from tests.cutter.conftest import fresh_database, pg_lock


def cli(capsys, *argv):
    """Run the CLI in-process; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


SUBMIT = [
    "--channel", "desertbus", "--quality", "source",
    "--start", "2026-11-28T13:59:45.5", "--end", "2026-11-28T13:59:51.25",
    "--title", "Clip one", "--location", "clips",
]  # fmt: skip


def test_init_db_on_an_empty_database(capsys):
    with pg_lock(), fresh_database("template0") as dsn:
        assert cli(capsys, "init-db", "--db", dsn) == (0, "schema is up to date\n", "")
        assert cli(capsys, "init-db", "--db", dsn)[0] == 0  # idempotent
        status, out, _ = cli(capsys, "submit", "--db", dsn, *SUBMIT)
        assert status == 0 and int(out) == 1
        jobs = Jobs(dsn)
        assert jobs.get(1).title == "Clip one"
        jobs.db.close()


def test_job_commands(dsn, jobs, capsys):
    status, out, err = cli(capsys, "submit", "--db", dsn, *SUBMIT, "--description", "Hi")
    assert (status, err) == (0, "")
    job_id = int(out)
    job = jobs.get(job_id)
    assert (job.state, job.description, job.allow_holes) == (State.EDITED, "Hi", False)
    status, out, _ = cli(capsys, "submit", "--db", dsn, *SUBMIT, "--draft", "--allow-holes")
    draft = jobs.get(int(out))
    assert draft.state == State.UNEDITED and draft.allow_holes

    status, out, _ = cli(capsys, "list", "--db", dsn)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATE", "CHANNEL/QUALITY"]
    assert lines[1].split()[:3] == [str(draft.id), "UNEDITED", "desertbus/source"]
    assert lines[2].split()[:2] == [str(job_id), "EDITED"] and "Clip one" in lines[2]
    status, out, _ = cli(capsys, "list", "--db", dsn, "--state", "EDITED", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [job_id]

    status, out, _ = cli(capsys, "show", "--db", dsn, str(job_id))
    assert "state          EDITED" in out and "duration       5.75" in out
    status, out, _ = cli(capsys, "show", "--db", dsn, str(job_id), "--json")
    assert json.loads(out) == jobs.get(job_id).to_json()

    assert cli(capsys, "cancel", "--db", dsn, str(job_id)) == (
        0, f"job {job_id} is now UNEDITED\n", ""
    )  # fmt: skip
    assert cli(capsys, "cancel", "--db", dsn, str(job_id)) == (
        1, "", f"cutter cancel: job {job_id} is UNEDITED: only EDITED or CLAIMED jobs can be "
        "cancelled\n",
    )  # fmt: skip
    assert cli(capsys, "reset", "--db", dsn, str(job_id)) == (
        0,
        f"job {job_id} is now EDITED\n",
        "",
    )
    assert cli(capsys, "show", "--db", dsn, "999") == (1, "", "cutter show: no job 999\n")


def test_operator_resets_a_finalizing_job(dsn, jobs, capsys):
    job = jobs.start_finalizing(jobs.claim(jobs.submit(**_fields()), "node1"), "node1")
    assert cli(capsys, "cancel", "--db", dsn, str(job.id))[0] == 1  # too late to cancel
    assert cli(capsys, "reset", "--db", dsn, str(job.id))[0] == 0
    reset = jobs.get(job.id)
    assert reset.state == State.EDITED and reset.uploader is None and reset.attempts == 0


def _fields():
    from tests.cutter.conftest import job_fields

    return job_fields()


@pytest.mark.parametrize(
    "args, error",
    [
        (["--end", "2026-11-28T13:59:40"], "cutter submit: end must be after start\n"),
        (["--title", "<b>"], "cutter submit: title must not contain '<' or '>' (YouTube "
                             "refuses them)\n"),
    ],
)  # fmt: skip
def test_bad_submit(shared_jobs, capsys, args, error):
    dsn = shared_jobs.db.dsn
    assert cli(capsys, "submit", "--db", dsn, *SUBMIT, *args) == (1, "", error)
    assert shared_jobs.list() == []  # no test in this module adds to this database


def test_database_unreachable(capsys):
    status, out, err = cli(capsys, "list", "--db", "host=127.0.0.1 port=1 dbname=x")
    assert status == 2 and out == ""
    assert err.startswith("cutter list: cannot reach the database: ") and err.count("\n") == 1


def test_run_refuses_bad_locations(capsys):
    for location, error in [
        ("clips", "bad location 'clips': expected NAME=TYPE:ARG"),
        ("clips=ftp:/x", "type must be one of local, youtube"),
        ("clips=local:/tmp/x,colour=red", "unknown option colour for local"),
        ("clips=local:/tmp/x,cut_type=slow", "location clips: cut_type must be one of fast, full"),
        ("yt=youtube:/nonexistent.json", "cannot read YouTube credentials /nonexistent.json"),
    ]:
        status, _, err = cli(capsys, "run", "--name", "n", "--location", location)
        assert status == 2 and error in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_as_a_module(dsn, jobs):
    """`python -m cutter` works end to end (the module's entry point, not just main())."""
    result = subprocess.run(
        [sys.executable, "-m", "cutter", "submit", "--db", dsn, *SUBMIT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert jobs.get(int(result.stdout)).title == "Clip one"
    help_text = subprocess.run(
        [sys.executable, "-m", "cutter", "run", "--help"], capture_output=True, text=True
    ).stdout
    for flag in ("--db", "--base-dir", "--name", "--location", "--metrics-port", "--backdoor-port"):
        assert flag in help_text


def test_operator_marks_a_finalizing_job_done(dsn, jobs, capsys):
    job = jobs.start_finalizing(jobs.claim(jobs.submit(**_fields()), "node1"), "node1")
    args = ["--video-id", "abc", "--video-link", "https://youtu.be/abc"]
    status, out, _ = cli(capsys, "mark-done", "--db", dsn, str(job.id), *args)
    assert (status, out) == (0, f"job {job.id} is now DONE: https://youtu.be/abc\n")
    done = jobs.get(job.id)
    assert (done.state, done.video_id, done.uploader) == (State.DONE, "abc", None)
    status, _, err = cli(capsys, "mark-done", "--db", dsn, str(job.id), *args)
    assert status == 1 and "only FINALIZING jobs can be marked done" in err
