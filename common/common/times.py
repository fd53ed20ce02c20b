"""Times as every part of streamvault reads and writes them: aware UTC datetimes.

The HTTP API, the database, the jobs and the command-line flags all take ISO 8601
UTC text (`2026-11-28T13:50:07.300`, naive taken as UTC) and give it back with a
`Z`. This module is the one parser and the one formatter; callers turn its
ValueError into their own error (a 400, a refused job, a bad flag).
"""

import datetime
from fractions import Fraction

import dateutil.parser

UTC = datetime.UTC

# Longest text tried as a time; anything longer is refused before dateutil
# sees it (the longest real ISO 8601 time is about 35 characters).
MAX_TIME_LENGTH = 64
TIME_EXAMPLE = "2026-11-28T13:50:07.300"


def to_utc(dt):
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_time(text):
    """ISO 8601 text (the HTTP API's and the database's times) → aware UTC datetime.

    Naive input is taken as UTC. Raises ValueError with a short reason; callers
    add which field it was and turn it into their own error (400, bad job, bad flag).
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected ISO 8601 UTC like {TIME_EXAMPLE}")
    if len(text) > MAX_TIME_LENGTH:
        raise ValueError("too long for a time")
    try:
        return to_utc(dateutil.parser.isoparse(text))
    except (ValueError, OverflowError) as e:
        # dateutil's reasons are worth passing on when they name a field
        # ("month must be in 1..12"), not when they are its parser's innards.
        reason = str(e)
        detail = f"{reason}; " if "must be" in reason or "out of range" in reason else ""
        raise ValueError(f"{detail}expected ISO 8601 UTC like {TIME_EXAMPLE}") from None


def format_time(dt):
    """An aware datetime as ISO 8601 UTC with microseconds and `Z` (safe in a query string)."""
    return to_utc(dt).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def exact_seconds(delta):
    """A timedelta as a Fraction of seconds, exactly (microseconds and all), for
    frame arithmetic that must not round."""
    return Fraction(delta // datetime.timedelta(microseconds=1), 1_000_000)
