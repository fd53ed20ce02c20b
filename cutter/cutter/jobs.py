"""Cut jobs in PostgreSQL: the schema, the states, and every query, named and documented.

The `events` table is the contract between everything that makes cut jobs
(the editor page, the CLI) and the cutters that do them (docs/DATABASE.md).
The database itself refuses impossible rows (CHECK
constraints) and impossible state changes (a trigger), so a bug in one cutter,
or an operator's hand-written UPDATE, cannot put a job into a state from which
it would be cut twice.

Every query that moves a job is guarded: it names the state (and, once
claimed, the cutter) it expects, and a row count of 0 means the job moved
under us — another cutter won the claim, or a user cancelled. Callers get
`JobGone` and drop the job; they never force it.

This module does no retrying: connection errors (`common.database.CONNECTION_ERRORS`)
propagate, and the cutter decides what to do about them (see main.py).
"""

import datetime
import enum
import re
from typing import NamedTuple

from common import times
from common.database import Database, query, transaction
from common.segments import validate_name_part
from common.times import format_time, to_utc

from .redact import redact


class State(enum.StrEnum):
    """Where a job is. Values are stored as the PostgreSQL enum `event_state`."""

    # Saved but not asked for: a draft, a cancelled job, or one that failed in a
    # way a person must look at (`error` says why). Cutters ignore it.
    UNEDITED = "UNEDITED"
    # Ready to cut. Any cutter serving its location may claim it.
    EDITED = "EDITED"
    # One cutter (`uploader`) holds it, and is cutting or sending data.
    # Nothing irreversible has happened yet: it can go back to EDITED.
    CLAIMED = "CLAIMED"
    # The cutter is making (or has made) the request that creates the video.
    # From here a job is never retried on its own: if the cutter dies, an
    # operator checks whether the video exists, then resets or fixes the row.
    FINALIZING = "FINALIZING"
    # Uploaded; the backend (YouTube) is still processing it. The uploader
    # polls until it is playable (DONE) or refused (UNEDITED with the reason).
    TRANSCODING = "TRANSCODING"
    # Uploaded and playable at `video_link`. Final: the row no longer changes.
    DONE = "DONE"


# The state changes the database accepts (enforced by the `events_guard`
# trigger). Anything else — UNEDITED → CLAIMED, DONE → anything, a job taken
# from one cutter by another — is refused.
TRANSITIONS = {
    (State.UNEDITED, State.EDITED): "submit, or an operator's reset",
    (State.EDITED, State.UNEDITED): "cancel",
    (State.EDITED, State.CLAIMED): "a cutter claims it",
    (State.CLAIMED, State.EDITED): "retryable error, cutter stopping or restarting, operator reset",
    (State.CLAIMED, State.UNEDITED): "cut error or refusal a person must look at; cancel",
    (State.CLAIMED, State.FINALIZING): "about to send the request that creates the video",
    (State.FINALIZING, State.TRANSCODING): "uploaded; backend processing",
    (State.FINALIZING, State.DONE): "uploaded, no processing step; or an operator's mark-done",
    (State.FINALIZING, State.UNEDITED): "the backend refused the final request: nothing was made",
    (State.FINALIZING, State.EDITED): "operator reset, after checking no video was made",
    (State.TRANSCODING, State.DONE): "processing finished",
    (State.TRANSCODING, State.UNEDITED): "processing failed or the video was rejected",
}

# States in which a cutter holds the job (and `uploader` is set).
HELD_STATES = (State.CLAIMED, State.FINALIZING, State.TRANSCODING)

# Limits checked on submit. YouTube refuses titles over 100 characters,
# descriptions over 5000 bytes, and '<' or '>' in either; checking here gives
# the editor the reason at once instead of a failed job later.
MAX_TITLE = 100
MAX_DESCRIPTION_BYTES = 5000
# The longest cut accepted: a whole day of a multi-day stream is a mistake,
# not a clip (and would tie a cutter up for a long time).
MAX_DURATION = datetime.timedelta(hours=12)
_LOCATION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Times a job may cover: nothing was recorded before 2000, and a range more
# than a day ahead is a typo (year 0001 once crashed every cutter's pass).
EARLIEST_START = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
MAX_AHEAD = datetime.timedelta(days=1)
# Never storable (PostgreSQL text refuses NUL; UTF-8 cannot encode a lone surrogate).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Not in a title: control characters (newlines, tabs, escapes) and the
# bidirectional embeddings, overrides and isolates that make a title read
# differently from what it is (U+202E shows "evil.exe" reversed).
_NOT_IN_TITLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# Columns a job is cut from. Once claimed they are frozen (the trigger refuses
# edits), and a claim only succeeds if they are still as the cutter read them.
# The trigger's and the claim's lists are made from this one.
CUT_FIELDS = (
    "channel",
    "quality",
    "start",
    "end",
    "allow_holes",
    "upload_location",
    "title",
    "description",
)


def _column(name):
    """A column name as SQL: quoted when it is a keyword (`"end"`)."""
    return f'"{name}"' if name == "end" else name


# --- schema -----------------------------------------------------------------

# Migration 1 (see migrations.py), idempotent because databases older than
# the migrations table run it again. Never edit it: a change is a new
# numbered migration in migrations.py.
SCHEMA = r"""
DO $$ BEGIN
    CREATE TYPE event_state AS ENUM
        ('UNEDITED', 'EDITED', 'CLAIMED', 'FINALIZING', 'TRANSCODING', 'DONE');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS events (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT NOT NULL,
    quality         TEXT NOT NULL,
    start           TIMESTAMPTZ NOT NULL,
    "end"           TIMESTAMPTZ NOT NULL,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    allow_holes     BOOLEAN NOT NULL DEFAULT FALSE,
    upload_location TEXT NOT NULL,
    state           event_state NOT NULL DEFAULT 'EDITED',
    uploader        TEXT,
    error           TEXT,
    video_id        TEXT,
    video_link      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_at        TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_at      TIMESTAMPTZ,
    finalizing_at   TIMESTAMPTZ,
    uploaded_at     TIMESTAMPTZ,
    done_at         TIMESTAMPTZ,
    CONSTRAINT events_range CHECK (start < "end"),
    CONSTRAINT events_names CHECK (channel <> '' AND quality <> '' AND upload_location <> ''),
    CONSTRAINT events_title CHECK (title <> ''),
    CONSTRAINT events_uploader_when_held CHECK (
        (uploader IS NOT NULL) = (state IN ('CLAIMED', 'FINALIZING', 'TRANSCODING'))),
    CONSTRAINT events_claimed_at_when_held CHECK (
        state NOT IN ('CLAIMED', 'FINALIZING', 'TRANSCODING') OR claimed_at IS NOT NULL),
    CONSTRAINT events_video_when_uploaded CHECK (
        (video_id IS NOT NULL) = (state IN ('TRANSCODING', 'DONE'))
        AND (video_link IS NOT NULL) = (state IN ('TRANSCODING', 'DONE'))),
    CONSTRAINT events_no_error_when_uploaded CHECK (
        state NOT IN ('TRANSCODING', 'DONE') OR error IS NULL),
    CONSTRAINT events_attempts CHECK (attempts >= 0)
);

CREATE INDEX IF NOT EXISTS events_state_location ON events (state, upload_location);

CREATE OR REPLACE FUNCTION events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state NOT IN ('UNEDITED', 'EDITED') THEN
            RAISE EXCEPTION 'a new job must be UNEDITED or EDITED, not %', NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id THEN
        RAISE EXCEPTION 'job %: the id cannot change', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.state = 'DONE' THEN
        RAISE EXCEPTION 'job %: a DONE job cannot change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state <> OLD.state AND (OLD.state::text || '>' || NEW.state::text) NOT IN (
        %(transitions)s
    ) THEN
        RAISE EXCEPTION 'job %: % -> % is not an allowed transition', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state = OLD.state AND OLD.state IN ('CLAIMED', 'FINALIZING', 'TRANSCODING')
            AND NEW.uploader IS DISTINCT FROM OLD.uploader THEN
        RAISE EXCEPTION 'job %: held by %, cannot pass to %', OLD.id, OLD.uploader, NEW.uploader
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.state NOT IN ('UNEDITED', 'EDITED') AND
            (%(new_cut_fields)s) IS DISTINCT FROM (%(old_cut_fields)s) THEN
        RAISE EXCEPTION 'job %: cannot edit a % job', OLD.id, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS events_guard ON events;
CREATE TRIGGER events_guard BEFORE INSERT OR UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_guard();

-- Wake cutters as soon as a job becomes claimable (they also poll, in case a
-- notification is missed while reconnecting).
CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'EDITED' THEN
        PERFORM pg_notify('events_edited', NEW.upload_location);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS events_notify ON events;
CREATE TRIGGER events_notify AFTER INSERT OR UPDATE OF state ON events
    FOR EACH ROW EXECUTE FUNCTION events_notify();
"""
for _name, _text in (
    ("transitions", ", ".join(f"'{a}>{b}'" for a, b in TRANSITIONS)),
    ("new_cut_fields", ", ".join(f"NEW.{_column(f)}" for f in CUT_FIELDS)),
    ("old_cut_fields", ", ".join(f"OLD.{_column(f)}" for f in CUT_FIELDS)),
):
    SCHEMA = SCHEMA.replace(f"%({_name})s", _text)

# The channel cutters LISTEN on; the payload is the job's upload location.
NOTIFY_CHANNEL = "events_edited"

# --- queries ----------------------------------------------------------------
# Each is one statement. Parameters always go through the driver.

# A new job. Returns the row.
INSERT_JOB = """
INSERT INTO events (channel, quality, start, "end", title, description, allow_holes,
                    upload_location, state, created_by, state_changed_by)
VALUES (%(channel)s, %(quality)s, %(start)s, %(end)s, %(title)s, %(description)s,
        %(allow_holes)s, %(upload_location)s, %(state)s, %(created_by)s, %(created_by)s)
RETURNING *
"""

# One job by id, or no row.
GET_JOB = "SELECT * FROM events WHERE id = %(id)s"

# Jobs, newest first, optionally of some states only (`states` NULL = all).
LIST_JOBS = """
SELECT * FROM events
WHERE %(states)s::event_state[] IS NULL OR state = ANY(%(states)s::event_state[])
ORDER BY id DESC
LIMIT %(limit)s
"""

# How many jobs are in each state (for the jobs-by-state gauge).
COUNT_BY_STATE = "SELECT state, count(*) AS count FROM events GROUP BY state"

# Jobs a cutter may claim: EDITED, for a location it serves, not waiting out a
# retry delay. Oldest first, so jobs are done in the order they were made; in
# pages (ids after `after_id`), so jobs this node cannot cut (holes in its
# store) never hide newer ones behind them.
FIND_CLAIMABLE = """
SELECT * FROM events
WHERE state = 'EDITED'
  AND upload_location = ANY(%(locations)s)
  AND (retry_at IS NULL OR retry_at <= now())
  AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s
"""

# Record why this cutter will not take a job (e.g. its store has holes in the
# range) without taking it, so the editor can show it and another cutter, with
# the data, can still claim it. Only writes when the message changes.
NOTE_SKIP = """
UPDATE events SET error = %(error)s
WHERE id = %(id)s AND state = 'EDITED' AND error IS DISTINCT FROM %(error)s
"""

# The claim: one guarded UPDATE. It succeeds only if the job is
# still EDITED and still as the cutter read it (so an edit made since is never
# cut with stale values); 0 rows means another cutter won or the job changed.
CLAIM = """
UPDATE events
SET state = 'CLAIMED', uploader = %(uploader)s, error = NULL, retry_at = NULL,
    claimed_at = now(), attempts = attempts + 1
WHERE id = %(id)s AND state = 'EDITED'
  AND {cut_fields_unchanged}
RETURNING *
""".format(cut_fields_unchanged=" AND ".join(f"{_column(f)} = %({f})s" for f in CUT_FIELDS))

# Give a claimed job back for any cutter to retry after `retry_seconds`
# (a retryable error, or this cutter stopping).
RELEASE = """
UPDATE events
SET state = 'EDITED', uploader = NULL, error = %(error)s,
    retry_at = now() + %(retry_seconds)s * interval '1 second'
WHERE id = %(id)s AND state = 'CLAIMED' AND uploader = %(uploader)s
RETURNING *
"""

# Stop a held job for a person to look at: UNEDITED with the reason.
# `from_state` is the state the cutter holds it in (CLAIMED, FINALIZING or
# TRANSCODING); the video columns are cleared as UNEDITED requires.
FAIL = """
UPDATE events
SET state = 'UNEDITED', uploader = NULL, error = %(error)s, video_id = NULL, video_link = NULL
WHERE id = %(id)s AND state = %(from_state)s AND uploader = %(uploader)s
RETURNING *
"""

# Entered just before the request that cannot be undone.
START_FINALIZING = """
UPDATE events SET state = 'FINALIZING', finalizing_at = now()
WHERE id = %(id)s AND state = 'CLAIMED' AND uploader = %(uploader)s
RETURNING *
"""

# The upload went through: TRANSCODING (the backend still processes it; the
# uploader keeps it to poll) or DONE (nothing more to wait for).
FINISH_UPLOAD = """
UPDATE events
SET state = %(state)s, video_id = %(video_id)s, video_link = %(video_link)s, error = NULL,
    uploaded_at = now(),
    done_at = CASE WHEN %(state)s = 'DONE' THEN now() END,
    uploader = CASE WHEN %(state)s = 'DONE' THEN NULL ELSE uploader END
WHERE id = %(id)s AND state = 'FINALIZING' AND uploader = %(uploader)s
RETURNING *
"""

# Leave a FINALIZING job where it is, saying what an operator must check.
FLAG_FINALIZING = """
UPDATE events SET error = %(error)s
WHERE id = %(id)s AND state = 'FINALIZING' AND uploader = %(uploader)s
RETURNING *
"""

# Processing finished: the video is playable.
FINISH_TRANSCODING = """
UPDATE events SET state = 'DONE', uploader = NULL, done_at = now()
WHERE id = %(id)s AND state = 'TRANSCODING' AND uploader = %(uploader)s
RETURNING *
"""

# The jobs a cutter must poll until their processing ends.
LIST_TRANSCODING = """
SELECT * FROM events
WHERE state = 'TRANSCODING' AND uploader = %(uploader)s AND upload_location = ANY(%(locations)s)
ORDER BY id
"""

# On start: a cutter's CLAIMED jobs are jobs it was cutting when it stopped or
# died. Nothing irreversible happened, so any cutter may do them again.
RECOVER_CLAIMED = """
UPDATE events SET state = 'EDITED', uploader = NULL, error = NULL
WHERE state = 'CLAIMED' AND uploader = %(uploader)s
RETURNING id
"""

# On start: a cutter's FINALIZING jobs may or may not have made a video. Never
# retried automatically; flagged so an operator checks, then resets.
FLAG_RECOVERED_FINALIZING = """
UPDATE events SET error = %(error)s
WHERE state = 'FINALIZING' AND uploader = %(uploader)s
RETURNING id
"""

# User: take a job back before it is finalised. A claimed job's cutter finds
# out at its next guarded update and drops it.
CANCEL = """
UPDATE events SET state = 'UNEDITED', uploader = NULL, error = %(error)s,
    state_changed_by = %(by)s
WHERE id = %(id)s AND state IN ('EDITED', 'CLAIMED')
RETURNING *
"""

# User: submit a draft, or submit again a job that stopped for a person
# (UNEDITED only: anything further along is an operator's `reset`).
RESUBMIT = """
UPDATE events SET state = 'EDITED', error = NULL, attempts = 0, retry_at = NULL,
    state_changed_by = %(by)s
WHERE id = %(id)s AND state = 'UNEDITED'
RETURNING *
"""

# Operator: back to EDITED, for any cutter to do again now. For a job stuck
# in CLAIMED (its cutter is gone), one in FINALIZING once the operator has
# checked that no video was made, one in UNEDITED after fixing its cause, or
# an EDITED one waiting out a retry delay.
RESET = """
UPDATE events
SET state = 'EDITED', uploader = NULL, error = NULL, attempts = 0, retry_at = NULL,
    state_changed_by = %(by)s
WHERE id = %(id)s AND state IN ('UNEDITED', 'EDITED', 'CLAIMED', 'FINALIZING')
RETURNING *
"""


# Operator: a FINALIZING job whose video turned out to exist after all (the
# cutter died before it could say so) is recorded as DONE with that video.
MARK_DONE = """
UPDATE events
SET state = 'DONE', uploader = NULL, error = NULL, video_id = %(video_id)s,
    video_link = %(video_link)s, uploaded_at = coalesce(uploaded_at, now()), done_at = now(),
    state_changed_by = %(by)s
WHERE id = %(id)s AND state = 'FINALIZING'
RETURNING *
"""


# Submission quota: the `count`th most recent job `created_by` this editor
# within `seconds`, if there is one (then the editor is at the limit), and
# how many seconds until it leaves the window.
NTH_RECENT_SUBMISSION = """
SELECT extract(epoch FROM created_at + %(seconds)s * interval '1 second' - now()) AS wait
FROM events
WHERE created_by = %(by)s AND created_at > now() - %(seconds)s * interval '1 second'
ORDER BY created_at DESC
OFFSET %(count)s - 1 LIMIT 1
"""


# --- errors -----------------------------------------------------------------


class JobError(Exception):
    """A job operation that cannot be done; the message is one line for a person."""


class JobNotFound(JobError):
    pass


class JobGone(JobError):
    """The job is no longer where this cutter left it (cancelled, reset, taken)."""


class BadJob(JobError, ValueError):
    """A submitted job's fields are not acceptable (the message says which and why)."""


class QuotaExceeded(JobError):
    """An editor submitted as many jobs as a limit allows; `retry_after` seconds to wait."""

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after


# --- jobs -------------------------------------------------------------------


class Job(NamedTuple):
    """One row of `events`."""

    id: int
    channel: str
    quality: str
    start: datetime.datetime
    end: datetime.datetime
    title: str
    description: str
    allow_holes: bool
    upload_location: str
    state: State
    uploader: str | None
    error: str | None
    video_id: str | None
    video_link: str | None
    attempts: int
    retry_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    claimed_at: datetime.datetime | None
    finalizing_at: datetime.datetime | None
    uploaded_at: datetime.datetime | None
    done_at: datetime.datetime | None
    created_by: str | None  # the editor who made it (None: the operator's CLI, or older)
    state_changed_by: str | None  # the last editor or operator to change its state

    @classmethod
    def from_row(cls, row):
        values = {name: row[name] for name in cls._fields}
        values["state"] = State(values["state"])
        for name, value in values.items():
            if isinstance(value, datetime.datetime):
                values[name] = to_utc(value)
        return cls(**values)

    @property
    def duration(self):
        return self.end - self.start

    def cut_params(self):
        """The values a claim checks are unchanged."""
        return {name: getattr(self, name) for name in CUT_FIELDS}

    def to_json(self):
        """A JSON-ready dict: times as ISO 8601 UTC, the state as its name."""
        out = {}
        for name, value in self._asdict().items():
            if isinstance(value, datetime.datetime):
                value = format_time(value)
            elif isinstance(value, State):
                value = value.value
            out[name] = value
        out["duration"] = self.duration.total_seconds()
        return out


def parse_time(value, what):
    """ISO 8601 → aware UTC datetime (naive means UTC). BadJob if unparseable."""
    if isinstance(value, datetime.datetime):
        return to_utc(value)
    if not isinstance(value, str) or not value:
        raise BadJob(f"{what} is required (ISO 8601 UTC, e.g. 2026-11-28T13:50:07.300)")
    try:
        return times.parse_time(value)
    except ValueError as e:
        raise BadJob(f"bad {what} {value[:64]!r}: {e}") from None


def validate_job(
    *,
    channel,
    quality,
    start,
    end,
    title,
    upload_location,
    description="",
    allow_holes=False,
    locations=None,
):
    """Check and normalise a new job's fields; returns them as a dict for INSERT_JOB.

    Raises `BadJob` with a one-line reason. `locations`, when given, is the set
    of upload locations that exist (the cutter's API knows them; the CLI does not).
    """
    fields = {}
    for name, value in (("channel", channel), ("quality", quality), ("title", title),
                        ("description", description), ("upload_location", upload_location),
                        ("start", start), ("end", end)):  # fmt: skip
        if isinstance(value, str) and _UNSTORABLE.search(value):
            raise BadJob(f"{name} contains a NUL character or an unpaired surrogate")
    for name, value in (("channel", channel), ("quality", quality)):
        try:
            fields[name] = validate_name_part(value, name)
        except ValueError as e:
            raise BadJob(str(e)) from None
    fields["start"] = parse_time(start, "start")
    fields["end"] = parse_time(end, "end")
    if fields["end"] <= fields["start"]:
        raise BadJob("end must be after start")
    if fields["start"] < EARLIEST_START:
        raise BadJob(f"start {format_time(fields['start'])} is before {EARLIEST_START.year}")
    latest = datetime.datetime.now(datetime.UTC) + MAX_AHEAD
    if fields["end"] > latest:
        raise BadJob(f"end {format_time(fields['end'])} is more than {MAX_AHEAD} from now")
    if fields["end"] - fields["start"] > MAX_DURATION:
        raise BadJob(f"a job may last at most {MAX_DURATION} (this one: {end} - {start})")
    for name, value in (("title", title), ("description", description)):
        if not isinstance(value, str):
            raise BadJob(f"{name} must be a string")
        if "<" in value or ">" in value:
            raise BadJob(f"{name} must not contain '<' or '>' (YouTube refuses them)")
    if _NOT_IN_TITLE.search(title):
        raise BadJob("title must not contain control characters or bidirectional overrides")
    title = title.strip()
    if not title:
        raise BadJob("title is required")
    if len(title) > MAX_TITLE:
        raise BadJob(f"title is {len(title)} characters; the limit is {MAX_TITLE}")
    if len(description.encode()) > MAX_DESCRIPTION_BYTES:
        raise BadJob(f"description is over {MAX_DESCRIPTION_BYTES} bytes")
    fields["title"] = title
    fields["description"] = description
    if not isinstance(allow_holes, bool):
        raise BadJob("allow_holes must be true or false")
    fields["allow_holes"] = allow_holes
    if not isinstance(upload_location, str) or not _LOCATION_RE.fullmatch(upload_location):
        raise BadJob(f"bad upload location {upload_location!r}: expected letters, digits, _ or -")
    if locations is not None and upload_location not in locations:
        known = ", ".join(sorted(locations)) or "none"
        raise BadJob(f"unknown upload location {upload_location!r} (known: {known})")
    fields["upload_location"] = upload_location
    return fields


class Jobs:
    """The queries above, run on a `Database`; returns `Job`s.

    Connection errors propagate (callers decide whether to wait and retry).
    """

    def __init__(self, db):
        self.db = db if isinstance(db, Database) else Database(db)

    def init_schema(self):
        """Create or upgrade the schema (idempotent, safe with concurrent callers)."""
        from .migrations import migrate

        return migrate(self.db)

    def _rows(self, sql, params):
        return [Job.from_row(row) for row in self.db.query(sql, params).rows]

    def _one(self, sql, params):
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def submit(self, state=State.EDITED, created_by=None, limits=(), **fields):
        """Validate and insert a job (`validate_job`'s arguments); returns it.

        `limits` are (count, seconds) pairs: `created_by` may have made at most
        `count` jobs in any `seconds`; beyond it, QuotaExceeded. The count and
        the insert run under a lock per editor, so concurrent submissions
        cannot slip past it together.
        """
        if state not in (State.UNEDITED, State.EDITED):
            raise BadJob("a new job is UNEDITED or EDITED")
        fields = validate_job(**fields)
        params = dict(fields, state=State(state).value, created_by=created_by)
        if not limits or created_by is None:
            return self._one(INSERT_JOB, params)
        with self.db.connection() as conn, transaction(conn):
            query(conn, "SELECT pg_advisory_xact_lock(hashtext(%(by)s))", {"by": created_by})
            for count, seconds in limits:
                rows = query(
                    conn,
                    NTH_RECENT_SUBMISSION,
                    {"by": created_by, "count": count, "seconds": seconds},
                ).fetchall()
                if rows:
                    raise QuotaExceeded(
                        f"{created_by} has submitted {count} jobs in {seconds:g} s, the limit; "
                        "try again later",
                        max(1, int(rows[0]["wait"]) + 1),
                    )
            return Job.from_row(query(conn, INSERT_JOB, params).fetchone())

    def get(self, job_id):
        job = self._one(GET_JOB, {"id": job_id})
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        return job

    def list(self, states=None, limit=100):
        states = [State(s).value for s in states] if states else None
        return self._rows(LIST_JOBS, {"states": states, "limit": limit})

    def counts(self):
        """{State: number of jobs}, with every state present."""
        counts = dict.fromkeys(State, 0)
        for row in self.db.query(COUNT_BY_STATE).rows:
            counts[State(row["state"])] = row["count"]
        return counts

    def _change(self, sql, params, job_id, refusal):
        """Run a user's or operator's change; JobNotFound or JobError(refusal) if refused."""
        job = self._one(sql, params)
        if job is None:
            current = self.get(job_id)
            raise JobError(refusal.format(job=current))
        return job

    def cancel(self, job_id, reason="cancelled", by=None):
        """EDITED or CLAIMED → UNEDITED. Refused once finalising has begun."""
        return self._change(
            CANCEL,
            {"id": job_id, "error": redact(reason), "by": by},
            job_id,
            "job {job.id} is {job.state}: only EDITED or CLAIMED jobs can be cancelled",
        )

    def resubmit(self, job_id, by=None):
        """UNEDITED → EDITED (a draft, or a job that failed for a person to fix)."""
        return self._change(
            RESUBMIT,
            {"id": job_id, "by": by},
            job_id,
            "job {job.id} is {job.state}: only UNEDITED jobs can be submitted again",
        )

    def reset(self, job_id, by="operator"):
        """UNEDITED, EDITED, CLAIMED or FINALIZING → EDITED, to be done now (see RESET)."""
        return self._change(
            RESET,
            {"id": job_id, "by": by},
            job_id,
            "job {job.id} is {job.state}: TRANSCODING and DONE jobs cannot be reset",
        )

    def mark_done(self, job_id, video_id, video_link, by="operator"):
        """FINALIZING → DONE with a video an operator found (see MARK_DONE)."""
        if not video_id or not video_link:
            raise BadJob("give both the video id and its link")
        return self._change(
            MARK_DONE,
            {"id": job_id, "video_id": video_id, "video_link": video_link, "by": by},
            job_id,
            "job {job.id} is {job.state}: only FINALIZING jobs can be marked done by hand",
        )

    # The cutter's side. Each guarded change returns the new Job, or raises
    # JobGone when the row was not as expected.

    def find_claimable(self, locations, after_id=0, limit=20):
        return self._rows(
            FIND_CLAIMABLE, {"locations": list(locations), "after_id": after_id, "limit": limit}
        )

    def note_skip(self, job, error):
        return self.db.query(NOTE_SKIP, {"id": job.id, "error": redact(error)}).rowcount == 1

    def claim(self, job, uploader):
        """Claim `job` as read; None if another cutter won or the job changed."""
        return self._one(CLAIM, dict(job.cut_params(), id=job.id, uploader=uploader))

    def _guarded(self, sql, job, what, **params):
        result = self._one(sql, dict(params, id=job.id))
        if result is None:
            raise JobGone(f"job {job.id} changed before it could be {what}")
        return result

    def release(self, job, uploader, error=None, retry_seconds=0):
        return self._guarded(
            RELEASE,
            job,
            "released",
            uploader=uploader,
            error=redact(error),
            retry_seconds=retry_seconds,
        )

    def fail(self, job, uploader, error, from_state=State.CLAIMED):
        return self._guarded(
            FAIL,
            job,
            "failed",
            uploader=uploader,
            error=redact(error),
            from_state=State(from_state).value,
        )

    def start_finalizing(self, job, uploader):
        return self._guarded(START_FINALIZING, job, "finalized", uploader=uploader)

    def finish_upload(self, job, uploader, state, video_id, video_link):
        if state not in (State.TRANSCODING, State.DONE):
            raise ValueError(f"an upload finishes in TRANSCODING or DONE, not {state}")
        return self._guarded(
            FINISH_UPLOAD,
            job,
            "marked uploaded",
            uploader=uploader,
            state=State(state).value,
            video_id=video_id,
            video_link=video_link,
        )

    def flag_finalizing(self, job, uploader, error):
        return self._guarded(
            FLAG_FINALIZING, job, "flagged", uploader=uploader, error=redact(error)
        )

    def finish_transcoding(self, job, uploader):
        return self._guarded(FINISH_TRANSCODING, job, "marked done", uploader=uploader)

    def list_transcoding(self, uploader, locations):
        return self._rows(LIST_TRANSCODING, {"uploader": uploader, "locations": list(locations)})

    def recover(self, uploader):
        """On start: return this cutter's CLAIMED jobs, flag its FINALIZING ones.

        Returns (ids returned to EDITED, ids flagged for an operator).
        """
        returned = [r["id"] for r in self.db.query(RECOVER_CLAIMED, {"uploader": uploader}).rows]
        error = (
            f"cutter {uploader} restarted while finalizing this job: check whether the video "
            "was made; if not, `cutter reset` it, if so, `cutter mark-done` it"
        )
        flagged = [
            r["id"]
            for r in self.db.query(
                FLAG_RECOVERED_FINALIZING, {"uploader": uploader, "error": error}
            ).rows
        ]
        return returned, flagged
