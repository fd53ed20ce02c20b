"""The events table against real PostgreSQL: constraints, every transition, the guarded queries."""

import datetime
import itertools

import psycopg2
import psycopg2.errors
import pytest

from cutter.jobs import (
    TRANSITIONS,
    BadJob,
    JobError,
    JobGone,
    JobNotFound,
    Jobs,
    State,
    validate_job,
)
from tests.cutter.conftest import at, job_fields

# Columns each state needs, so that a test row in a state is a valid row.
STATE_COLUMNS = {
    State.UNEDITED: {"uploader": None, "video_id": None, "video_link": None},
    State.EDITED: {"uploader": None, "video_id": None, "video_link": None},
    State.CLAIMED: {"uploader": "node1", "video_id": None, "video_link": None},
    State.FINALIZING: {"uploader": "node1", "video_id": None, "video_link": None},
    State.TRANSCODING: {"uploader": "node1", "video_id": "v1", "video_link": "https://v/1"},
    State.DONE: {"uploader": None, "video_id": "v1", "video_link": "https://v/1"},
}
# How to reach each state from EDITED through allowed transitions.
PATHS = {
    State.UNEDITED: [State.UNEDITED],
    State.EDITED: [],
    State.CLAIMED: [State.CLAIMED],
    State.FINALIZING: [State.CLAIMED, State.FINALIZING],
    State.TRANSCODING: [State.CLAIMED, State.FINALIZING, State.TRANSCODING],
    State.DONE: [State.CLAIMED, State.FINALIZING, State.DONE],
}


def set_state(conn, job_id, state, error=None):
    columns = dict(STATE_COLUMNS[state], state=state.value, id=job_id, error=error)
    with conn.cursor() as cursor:
        cursor.execute(
            """UPDATE events SET state = %(state)s, uploader = %(uploader)s, error = %(error)s,
                   video_id = %(video_id)s, video_link = %(video_link)s,
                   claimed_at = coalesce(claimed_at, now())
               WHERE id = %(id)s""",
            columns,
        )
        assert cursor.rowcount == 1


def make_job(jobs, state=State.EDITED):
    job = jobs.submit(**job_fields())
    with jobs.db.connection() as conn:
        for step in PATHS[state]:
            set_state(conn, job.id, step)
    return jobs.get(job.id)


@pytest.mark.parametrize(
    "old, new", [pair for pair in itertools.product(State, State) if pair[0] != pair[1]]
)
def test_transitions(shared_jobs, old, new):
    """Each of the 30 state changes is allowed exactly when TRANSITIONS lists it."""
    jobs = shared_jobs
    job = make_job(jobs, old)
    assert job.state == old
    with jobs.db.connection() as conn:
        if (old, new) in TRANSITIONS:
            set_state(conn, job.id, new)
            assert jobs.get(job.id).state == new
        else:
            with pytest.raises(psycopg2.errors.CheckViolation) as raised:
                set_state(conn, job.id, new)
            message = str(raised.value)
            assert "not an allowed transition" in message or "DONE job cannot change" in message
            assert jobs.get(job.id).state == old


def test_transition_table_matches_design():
    # docs/DATABASE.md's transition table, spelled out: a change here must be a deliberate one.
    assert set(TRANSITIONS) == {
        (State.UNEDITED, State.EDITED),
        (State.EDITED, State.UNEDITED),
        (State.EDITED, State.CLAIMED),
        (State.CLAIMED, State.EDITED),
        (State.CLAIMED, State.UNEDITED),
        (State.CLAIMED, State.FINALIZING),
        (State.FINALIZING, State.TRANSCODING),
        (State.FINALIZING, State.DONE),
        (State.FINALIZING, State.UNEDITED),
        (State.FINALIZING, State.EDITED),
        (State.TRANSCODING, State.DONE),
        (State.TRANSCODING, State.UNEDITED),
    }


def run(jobs, sql, params):
    with jobs.db.connection() as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.parametrize(
    "state, sql, constraint",
    [
        (State.CLAIMED, "UPDATE events SET uploader = NULL WHERE id = %(id)s", "held by"),
        (State.EDITED, "UPDATE events SET uploader = 'x' WHERE id = %(id)s", "uploader"),
        (State.TRANSCODING, "UPDATE events SET video_id = NULL WHERE id = %(id)s", "video"),
        (State.CLAIMED, "UPDATE events SET video_link = 'l' WHERE id = %(id)s", "video"),
        (State.TRANSCODING, "UPDATE events SET error = 'e' WHERE id = %(id)s", "no_error"),
        (State.EDITED, 'UPDATE events SET "end" = start WHERE id = %(id)s', "range"),
        (State.EDITED, "UPDATE events SET title = '' WHERE id = %(id)s", "title"),
        (State.EDITED, "UPDATE events SET channel = '' WHERE id = %(id)s", "names"),
        (State.EDITED, "UPDATE events SET attempts = -1 WHERE id = %(id)s", "attempts"),
    ],
)
def test_impossible_rows_refused(shared_jobs, state, sql, constraint):
    jobs = shared_jobs
    job = make_job(jobs, state)
    with pytest.raises(psycopg2.errors.CheckViolation, match=constraint):
        run(jobs, sql, {"id": job.id})
    assert jobs.get(job.id) == job


@pytest.mark.parametrize(
    "state, sql, reason",
    [
        (State.CLAIMED, "UPDATE events SET title = 'other' WHERE id = %(id)s", "cannot edit"),
        (State.FINALIZING, "UPDATE events SET start = start - interval '1 s' WHERE id = %(id)s",
         "cannot edit"),
        (State.CLAIMED, "UPDATE events SET uploader = 'node2' WHERE id = %(id)s", "held by"),
        (State.TRANSCODING, "UPDATE events SET uploader = 'node2' WHERE id = %(id)s", "held by"),
        (State.DONE, "UPDATE events SET title = 'other' WHERE id = %(id)s", "DONE job"),
        (State.EDITED, "UPDATE events SET id = 999 WHERE id = %(id)s", "id cannot change"),
    ],
)  # fmt: skip
def test_held_jobs_are_frozen(shared_jobs, state, sql, reason):
    jobs = shared_jobs
    job = make_job(jobs, state)
    with pytest.raises(psycopg2.errors.CheckViolation, match=reason):
        run(jobs, sql, {"id": job.id})
    assert jobs.get(job.id) == job


def test_edits_allowed_before_claim(shared_jobs):
    jobs = shared_jobs
    job = make_job(jobs, State.EDITED)
    run(jobs, "UPDATE events SET title = 'better' WHERE id = %(id)s", {"id": job.id})
    edited = jobs.get(job.id)
    assert edited.title == "better" and edited.updated_at > job.updated_at


@pytest.mark.parametrize("state", [State.CLAIMED, State.FINALIZING, State.DONE])
def test_new_jobs_start_unedited_or_edited(shared_jobs, state):
    jobs = shared_jobs
    fields = job_fields()
    with pytest.raises(psycopg2.errors.CheckViolation, match="new job"):
        run(
            jobs,
            """INSERT INTO events (channel, quality, start, "end", title, upload_location,
                                   state, uploader, claimed_at)
               VALUES (%(channel)s, %(quality)s, %(start)s, %(end)s, %(title)s,
                       %(upload_location)s, %(state)s, 'n', now())""",
            dict(fields, state=state.value),
        )
    with pytest.raises(BadJob):
        jobs.submit(state=state, **fields)


def test_schema_is_idempotent(jobs):
    job = jobs.submit(**job_fields())
    jobs.init_schema()
    jobs.init_schema()
    assert jobs.get(job.id) == job


# --- validation ---------------------------------------------------------------

BAD_JOBS = [
    ({"channel": ""}, "bad channel"),
    ({"channel": "a/b"}, "path separator"),
    ({"quality": ".hidden"}, "starts with '.'"),
    ({"start": "yesterday"}, "bad start"),
    ({"end": ""}, "end is required"),
    ({"end": at(3.5)}, "end must be after start"),
    ({"end": at(3.5 + 13 * 3600)}, "at most"),
    ({"title": "   "}, "title is required"),
    ({"title": "x" * 101}, "101 characters"),
    ({"title": "a <b> c"}, "must not contain"),
    ({"description": "é" * 2501}, "over 5000 bytes"),
    ({"allow_holes": "yes"}, "true or false"),
    ({"upload_location": "no spaces"}, "bad upload location"),
    ({"title": 5}, "must be a string"),
    ({"start": "0001-01-01T00:00:00", "end": "0001-01-01T00:01:00"}, "is before 2000"),
    ({"start": "9999-12-31T00:00:00", "end": "9999-12-31T00:01:00"}, "more than 1 day"),
    ({"title": "nul\x00"}, "NUL character or an unpaired surrogate"),
    ({"description": "lone \ud800"}, "NUL character or an unpaired surrogate"),
    ({"channel": "a\x00"}, "NUL character"),
    ({"title": "two\nlines"}, "control characters or bidirectional overrides"),
    ({"title": "clip\u202egnp.exe"}, "control characters or bidirectional overrides"),
    ({"title": "isolate\u2067x"}, "bidirectional"),
]


@pytest.mark.parametrize("overrides, message", BAD_JOBS)
def test_bad_jobs_refused(overrides, message):
    with pytest.raises(BadJob, match=message):
        validate_job(**job_fields(**overrides))


def test_validation_normalises():
    fields = validate_job(
        **job_fields(start="2026-11-28T13:59:45.5", end="2026-11-28T15:00:00+01:00", title=" T ")
    )
    assert fields["start"] == at(3.5)
    assert fields["end"] == at(18)
    assert fields["title"] == "T"
    with pytest.raises(BadJob, match="unknown upload location 'clips' \\(known: youtube\\)"):
        validate_job(**job_fields(), locations={"youtube"})


# --- the cutter's queries ---------------------------------------------------------


def test_claim_is_won_once(jobs):
    job = jobs.submit(**job_fields())
    assert jobs.find_claimable(["clips"]) == [job]
    assert jobs.find_claimable(["elsewhere"]) == []
    first = jobs.claim(job, "node1")
    assert first.state == State.CLAIMED and first.uploader == "node1" and first.attempts == 1
    assert jobs.claim(job, "node2") is None
    assert jobs.get(job.id).uploader == "node1"
    assert jobs.find_claimable(["clips"]) == []


def test_claim_refuses_a_job_edited_since_it_was_read(jobs):
    job = jobs.submit(**job_fields())
    run(
        jobs, 'UPDATE events SET "end" = "end" + interval \'1 s\' WHERE id = %(id)s', {"id": job.id}
    )
    assert jobs.claim(job, "node1") is None
    assert jobs.get(job.id).state == State.EDITED
    assert jobs.claim(jobs.get(job.id), "node1").state == State.CLAIMED


def test_guarded_changes_need_the_holder(jobs):
    job = jobs.claim(jobs.submit(**job_fields()), "node1")
    with pytest.raises(JobGone):
        jobs.start_finalizing(job, "node2")
    with pytest.raises(JobGone):
        jobs.release(job, "node2")
    finalizing = jobs.start_finalizing(job, "node1")
    assert finalizing.state == State.FINALIZING and finalizing.finalizing_at is not None
    with pytest.raises(JobGone):
        jobs.release(job, "node1")  # too late to give it back
    with pytest.raises(JobError, match="FINALIZING: only EDITED or CLAIMED"):
        jobs.cancel(job.id)
    done = jobs.finish_upload(job, "node1", State.DONE, "v", "file:///v")
    assert done.state == State.DONE and done.uploader is None and done.done_at is not None


def test_release_delays_the_retry(jobs):
    job = jobs.claim(jobs.submit(**job_fields()), "node1")
    released = jobs.release(job, "node1", "network down (will retry)", retry_seconds=3600)
    assert released.state == State.EDITED and released.error == "network down (will retry)"
    assert released.retry_at - released.updated_at > datetime.timedelta(minutes=59)
    assert jobs.find_claimable(["clips"]) == []
    reset = jobs.reset(job.id)
    assert reset.retry_at is None and reset.attempts == 0 and reset.error is None
    assert jobs.find_claimable(["clips"]) == [reset]


def test_note_skip_keeps_the_job_claimable(jobs):
    job = jobs.submit(**job_fields())
    assert jobs.note_skip(job, "node1: holes")
    assert not jobs.note_skip(job, "node1: holes")  # unchanged: not written again
    noted = jobs.get(job.id)
    assert noted.state == State.EDITED and noted.error == "node1: holes"
    assert jobs.claim(noted, "node2").error is None


def test_cancel_and_reset(jobs):
    job = jobs.submit(**job_fields())
    cancelled = jobs.cancel(job.id)
    assert cancelled.state == State.UNEDITED and cancelled.error == "cancelled"
    with pytest.raises(JobError, match="UNEDITED"):
        jobs.cancel(job.id)
    assert jobs.reset(job.id).state == State.EDITED
    claimed = jobs.claim(jobs.get(job.id), "node1")
    assert jobs.cancel(job.id).uploader is None
    with pytest.raises(JobGone):
        jobs.start_finalizing(claimed, "node1")  # the cutter finds out and drops it
    with pytest.raises(JobNotFound):
        jobs.cancel(12345)
    with pytest.raises(JobNotFound):
        jobs.reset(12345)


def test_recover_on_start(jobs):
    claimed = jobs.claim(jobs.submit(**job_fields()), "node1")
    finalizing = jobs.start_finalizing(jobs.claim(jobs.submit(**job_fields()), "node1"), "node1")
    others = jobs.claim(jobs.submit(**job_fields()), "node2")
    returned, flagged = jobs.recover("node1")
    assert returned == [claimed.id] and flagged == [finalizing.id]
    assert jobs.get(claimed.id).state == State.EDITED
    still = jobs.get(finalizing.id)
    assert still.state == State.FINALIZING and "check whether the video" in still.error
    assert jobs.get(others.id).state == State.CLAIMED


def test_list_and_counts(jobs):
    a = jobs.submit(**job_fields())
    b = jobs.submit(state=State.UNEDITED, **job_fields(title="draft"))
    assert [j.id for j in jobs.list()] == [b.id, a.id]
    assert [j.id for j in jobs.list([State.UNEDITED])] == [b.id]
    assert [j.id for j in jobs.list(limit=1)] == [b.id]
    counts = jobs.counts()
    assert counts[State.EDITED] == 1 and counts[State.UNEDITED] == 1 and counts[State.DONE] == 0


def test_to_json(jobs):
    job = jobs.submit(**job_fields(start=3.5, end=9.25))
    data = job.to_json()
    assert data["start"] == "2026-11-28T13:59:45.500000Z"
    assert data["duration"] == 5.75 and data["state"] == "EDITED"


def test_unreachable_database_raises_connection_errors():
    jobs = Jobs("host=127.0.0.1 port=1 dbname=nothing connect_timeout=2")
    with pytest.raises(psycopg2.OperationalError):
        jobs.list()
