"""Query-string and path parameters, parsed once for every route.

Each parser takes the raw text and the parameter's name, and returns the value
or raises `werkzeug.exceptions.BadRequest` with a one-line reason naming the
parameter and what was wrong with it (the app's error handler sends that line
as the body). Nothing here touches the store.

Times are ISO 8601 (python-dateutil's `isoparse`: `2026-11-28T13:50:07.300`,
`2026-11-28T13:50:07Z`, `...+01:00`, or a bare date); a time without an offset
is UTC. Note for users: an unescaped `+` in a query string means a space, so
`+01:00` must be sent as `%2B01:00` (or use `Z`); a time that failed to parse
that way gets that hint in its 400.
"""

import re

from werkzeug.exceptions import BadRequest

from common import times
from common.segments import END_HOUR, FIRST_HOUR
from common.times import MAX_TIME_LENGTH

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off", "")


def _shown(text):
    """The value for an error message: quoted, and short even if the input was not."""
    if len(text) > MAX_TIME_LENGTH:
        text = text[:MAX_TIME_LENGTH] + "..."
    return repr(text)


# A `+HH:MM` offset whose `+` a query string turned into a space.
_SPACED_OFFSET = re.compile(r" \d{2}(?::?\d{2})?$")


def parse_time(text, name):
    """ISO 8601 text → aware UTC datetime (`common.times.parse_time`); 400 if bad.

    Refuses times outside the years a store can hold (`common.segments`'
    FIRST_HOUR to END_HOUR): no recording is there, and year 1 or 9999 would
    overflow the hour arithmetic of a scan.
    """
    try:
        value = times.parse_time(text)
    except ValueError as e:
        hint = ""
        if _SPACED_OFFSET.search(text):
            hint = (
                " (a '+' in a URL's query is a space: write the offset's '+' as %2B,"
                " or give the time in UTC with Z)"
            )
        raise BadRequest(f"bad {name} {_shown(text)}: {e}{hint}") from None
    if not FIRST_HOUR <= value <= END_HOUR:
        raise BadRequest(
            f"bad {name} {_shown(text)}: outside the years {FIRST_HOUR.year}"
            f" to {END_HOUR.year - 1}, where nothing can be recorded"
        )
    return value


def parse_bool(text, name):
    """`true`/`false` (also 1/0, yes/no, on/off; empty is false), any case."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRequest(
        f"bad {name} {_shown(text)}: expected true or false"
        f" ({', '.join(TRUE_WORDS)}; {', '.join(w for w in FALSE_WORDS if w)}; any case)"
    )


def time_range(args, *, start_required=True, end_required=False, max_range=None):
    """`(start, end)` from a request's `args`; a missing optional one is None.

    Refuses a missing required time, `end <= start`, and a range longer than
    `max_range` (a timedelta) when both ends are given.
    """
    times = {}
    for name, required in (("start", start_required), ("end", end_required)):
        text = args.get(name)
        if text is None or text == "":
            if required:
                raise BadRequest(f"{name} is required (ISO 8601, e.g. 2026-11-28T13:50:07)")
            times[name] = None
        else:
            times[name] = parse_time(text, name)
    start, end = times["start"], times["end"]
    if start is not None and end is not None:
        if end <= start:
            raise BadRequest(f"end ({format_time(end)}) must be after start ({format_time(start)})")
        if max_range is not None and end - start > max_range:
            raise BadRequest(f"range longer than {format_span(max_range)}: ask for a shorter one")
    return start, end


def get_bool(args, name, default=False):
    """A boolean query parameter, `default` when absent."""
    text = args.get(name)
    if text is None:
        return default
    return parse_bool(text, name)


format_time = times.format_time


def format_span(span):
    """A timedelta for a message: `8 days`, `1 hour`, `36 hours`, `90 seconds`."""
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"
