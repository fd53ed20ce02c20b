"""The segment store: the one place its layout and file names are parsed and built.

Layout: ``BASE/<channel>/<quality>/<hour>/<name>`` where ``hour`` is the UTC hour
the segment starts in (``2026-11-28T13``) and ``name`` is
``MM:SS.ffffff-DURATION-TYPE-HASH.EXT``, ``EXT`` being the container: ``ts``
(MPEG-TS, as received) or ``mp4`` (fragmented MP4: the media initialization
section followed by the media segment, so each file decodes on its own).

Times are kept as aware UTC datetimes and durations as timedeltas, both exact to
the microsecond. Floats are never used: a 1 µs error would make two neighbouring
segments look overlapping and turn every join into a hole.

Anything that reads a store (restreamer, backfiller, cutter) goes through
`parse_segment_path`; a bad name raises `ValueError` saying what is wrong, and
store scans log and skip such files rather than failing the whole listing.
Bounds are part of a name's validity (hours in FIRST_HOUR..END_HOUR, durations
up to MAX_DURATION), so a hostile name is invalid on every node alike.

Listing is the hot path (a day-long playlist lists 43,200 names): an hour is
checked in one regex pass and cut up with no Python code per name, cached while
its directory is unchanged, and `get_best_segments` lets other greenlets run
between the hours it lists.
"""

import base64
import bisect
import collections
import contextlib
import datetime
import functools
import gc
import hashlib
import logging
import operator
import os
import re
import secrets
import time
from itertools import repeat
from typing import NamedTuple

import gevent

from .times import UTC, to_utc

logger = logging.getLogger(__name__)

HOUR_FORMAT = "%Y-%m-%dT%H"
ONE_HOUR = datetime.timedelta(hours=1)
# The hours a store can hold. Nothing was recorded before 2000 and nothing
# will be after 2099, so a name outside them is not a segment: a hostile
# `1970-01-01T00` hour, listed to every node, once made every playlist without
# a start a 400 (its range ran from 1970).
FIRST_HOUR = datetime.datetime(2000, 1, 1, tzinfo=UTC)
END_HOUR = datetime.datetime(2100, 1, 1, tzinfo=UTC)
# The longest a segment may last. Twitch's last 2 s and HLS origins rarely
# pass 10 s; a segment named as lasting 999999999999 s covered every later
# hour and made every playlist and cut over them a 500.
MAX_DURATION = datetime.timedelta(minutes=5)

# Types in order of preference for one start time: a complete download beats a
# suspicious one beats one whose body broke. `temp` files are being written and
# are invisible to readers.
TYPE_RANK = {"full": 3, "suspect": 2, "partial": 1}
TYPES = ("full", "suspect", "partial", "temp")
# Containers, named by their file extension. A range may hold both (a channel
# that switched), so every reader must handle both.
CONTAINERS = ("ts", "mp4")

# SHA-256 is 32 bytes: 43 characters of URL-safe base64 once the `=` is dropped.
HASH_LENGTH = 43

# re.ASCII throughout: `\d` is 0-9 only. Unicode's other digits (`٠١`, which
# int() reads) would give one segment several names.
_NAME_RE = re.compile(
    r"(?P<minute>\d{2}):(?P<second>\d{2})\.(?P<micro>\d{6})"
    r"-(?P<duration>[^-]*)"
    r"-(?P<type>[^-]*)"
    r"-(?P<hash>.*)\.(?:ts|mp4)",
    re.ASCII,
)
_DURATION_RE = re.compile(r"(\d+)(?:\.(\d{1,6}))?", re.ASCII)
_HASH_RE = re.compile(r"[A-Za-z0-9_-]+")
_HOUR_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}", re.ASCII)
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SegmentInfo(NamedTuple):
    """One segment file, as its path describes it.

    `channel`, `quality` and `hour` are None when parsed from a bare name with
    nothing to say them; `start` is then None too unless an hour was given.
    `container` (`ts` or `mp4`) comes from the name's extension.
    """

    path: str
    channel: str | None
    quality: str | None
    hour: str | None
    start: datetime.datetime | None
    duration: datetime.timedelta
    type: str
    hash: str

    @property
    def end(self):
        return self.start + self.duration

    @property
    def is_partial(self):
        """True for segments that do not hold their full duration of good video."""
        return self.type in ("partial", "suspect")

    @property
    def name(self):
        return self.path.rpartition("/")[2]  # os.path.basename, at a third of the cost

    @property
    def container(self):
        """`ts` (MPEG-TS) or `mp4` (fragmented MP4), from the file's extension."""
        return "mp4" if self.path.endswith(".mp4") else "ts"


# What listings make: SegmentInfos whose `container` is a class attribute, not
# worked out from the path (a day's playlist asks 43,200 times: an eighth of
# formatting it). Alike in all else; `_replace` and pickling give a plain one.
_LISTED = {
    container: type("SegmentInfo", (SegmentInfo,), {
        "__slots__": (), "container": container, "_make": staticmethod(SegmentInfo._make),
        "__reduce__": lambda self: (SegmentInfo._make, (tuple(self),)),
    }) for container in CONTAINERS
}  # fmt: skip


def _bad(path, reason):
    return ValueError(f"bad segment path {path!r}: {reason}")


def validate_name_part(value, what):
    """Check a channel, quality or other single path component; return it.

    Refuses anything that could walk out of its directory or hide: empty, `.`
    first, path separators, NUL, over-long.
    """
    if not value or not isinstance(value, str):
        raise ValueError(f"bad {what} {value!r}: empty")
    if value.startswith("."):
        raise ValueError(f"bad {what} {value!r}: starts with '.'")
    if "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"bad {what} {value!r}: contains a path separator or NUL")
    if len(value) > 255:
        raise ValueError(f"bad {what}: longer than 255 characters")
    return value


def parse_hour(hour):
    """`2026-11-28T13` → aware datetime of the hour's start. ValueError if malformed.

    Hours outside FIRST_HOUR..END_HOUR are malformed too: no store holds them.
    """
    expected = "expected YYYY-MM-DDTHH, a UTC hour such as 2026-11-28T13"
    if not isinstance(hour, str) or not _HOUR_RE.fullmatch(hour):
        raise ValueError(f"bad hour {hour!r}: {expected}")
    try:
        start = datetime.datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        # strptime's own reasons ("unconverted data remains: 9") say nothing
        # to a user: the date or the hour is out of range.
        raise ValueError(f"bad hour {hour!r}: no such date or hour; {expected}") from None
    if not FIRST_HOUR <= start < END_HOUR:
        raise ValueError(
            f"bad hour {hour!r}: outside the years {FIRST_HOUR.year} to {END_HOUR.year - 1}"
        )
    return start


def format_hour(dt):
    return to_utc(dt).strftime(HOUR_FORMAT)


def parse_duration(text):
    """Decimal seconds → timedelta, exactly; at most 6 decimal places."""
    match = _DURATION_RE.fullmatch(text)
    if not match:
        raise ValueError(f"bad duration {text!r}")
    whole, frac = match.groups()
    micros = int(whole) * 1_000_000 + (int(frac.ljust(6, "0")) if frac else 0)
    return datetime.timedelta(microseconds=micros)


def format_duration(duration):
    """timedelta → `2.000` or `2.002` (milliseconds), or 6 places when needed."""
    micros = duration // datetime.timedelta(microseconds=1)
    if micros < 0:
        raise ValueError(f"negative duration {duration}")
    seconds, micros = divmod(micros, 1_000_000)
    if micros % 1000 == 0:
        return f"{seconds}.{micros // 1000:03d}"
    return f"{seconds}.{micros:06d}"


def _check_hash(path, type, value):
    if type == "temp":
        if not _ID_RE.fullmatch(value):
            raise _bad(path, f"bad temp id {value!r}")
        return
    if len(value) != HASH_LENGTH or not _HASH_RE.fullmatch(value):
        raise _bad(path, f"bad hash {value!r}: expected {HASH_LENGTH} URL-safe base64 characters")
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except ValueError:
        raise _bad(path, f"bad hash encoding {value!r}") from None
    if len(raw) != 32 or encode_hash(raw) != value:
        raise _bad(path, f"bad hash encoding {value!r}")


def parse_segment_path(path, *, channel=None, quality=None, hour=None):
    """Parse a segment's full path, or a bare file name, into a `SegmentInfo`.

    Channel, quality and hour come from the path's parent directories when it
    has them (`.../<channel>/<quality>/<hour>/<name>`), otherwise from the
    keyword arguments. When both are present they must agree, which is how a
    reader checks that a peer's listing is for what it asked. Raises ValueError
    naming the path and what is wrong.
    """
    parts = path.split("/")
    name = parts[-1]
    given = {"channel": channel, "quality": quality, "hour": hour}
    found = dict(
        zip(("channel", "quality", "hour"), [None] * (4 - len(parts)) + parts[-4:-1], strict=True)
    )
    for key, value in found.items():
        if value is not None and given[key] is not None and value != given[key]:
            raise _bad(path, f"{key} {value!r} is not {given[key]!r}")
        if value is None:
            found[key] = given[key]
    if name.startswith("."):
        raise _bad(path, "hidden file")
    if not name.endswith((".ts", ".mp4")):
        raise _bad(path, "not a .ts or .mp4 file")
    match = _NAME_RE.fullmatch(name)
    if not match:
        raise _bad(path, "expected MM:SS.ffffff-DURATION-TYPE-HASH.ts (or .mp4)")
    type = match["type"]
    if type not in TYPES:
        raise _bad(path, f"unknown type {type!r}")
    minute, second = int(match["minute"]), int(match["second"])
    if minute > 59 or second > 59:
        raise _bad(path, f"bad time {match['minute']}:{match['second']}")
    try:
        duration = _check_duration(parse_duration(match["duration"]))
    except ValueError as e:
        raise _bad(path, str(e)) from None
    _check_hash(path, type, match["hash"])
    start = None
    if found["hour"] is not None:
        try:
            hour_start = parse_hour(found["hour"])
        except ValueError as e:
            raise _bad(path, str(e)) from None
        offset = (minute * 60 + second) * 1_000_000 + int(match["micro"])
        start = hour_start + datetime.timedelta(microseconds=offset)
    return SegmentInfo(
        path=path,
        channel=found["channel"],
        quality=found["quality"],
        hour=found["hour"],
        start=start,
        duration=duration,
        type=type,
        hash=match["hash"],
    )


def _check_container(container):
    if container not in CONTAINERS:
        raise ValueError(f"unknown container {container!r}: expected one of {CONTAINERS}")
    return container


def _check_duration(duration):
    if duration > MAX_DURATION:
        raise ValueError(
            f"duration {format_duration(duration)} s is over the"
            f" {MAX_DURATION.total_seconds():g} s a segment may last"
        )
    return duration


def segment_name(start, duration, type, hash, container="ts"):
    """The file name for a segment (no directories); `container` is `ts` or `mp4`.

    ValueError for a name no reader would accept: an unknown type or
    container, a duration over MAX_DURATION or a start outside
    FIRST_HOUR..END_HOUR.
    """
    start = to_utc(start)
    if type not in TYPES:
        raise ValueError(f"unknown type {type!r}")
    _check_container(container)
    _check_duration(duration)
    if not FIRST_HOUR <= start < END_HOUR:
        raise ValueError(f"start {start.isoformat()} is outside the hours a store can hold")
    return (
        f"{start.minute:02d}:{start.second:02d}.{start.microsecond:06d}"
        f"-{format_duration(duration)}-{type}-{hash}.{container}"
    )


def segment_path(base_dir, channel, quality, start, duration, type, hash, container="ts"):
    """The inverse of `parse_segment_path`: the full path of a segment."""
    return os.path.join(
        base_dir,
        validate_name_part(channel, "channel"),
        validate_name_part(quality, "quality"),
        format_hour(start),
        segment_name(start, duration, type, hash, container),
    )


def encode_hash(digest):
    """Raw SHA-256 digest → the name's hash: URL-safe base64 without `=`."""
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def hash_bytes(data):
    return encode_hash(hashlib.sha256(data).digest())


# --- writing ---------------------------------------------------------------


class SegmentWriter:
    """Write one segment atomically, hashing as it goes.

    Bytes go to a `temp` file in the segment's final directory; `finish(type)`
    renames it to its final name (which carries the hash) and returns the path.
    If an identical file is already there (another writer of the same segment
    won the race), the rename simply replaces it with the same bytes: success.
    `abort()` (also on leaving a `with` block by an exception, or without
    finishing) removes the temp file, so only whole files ever appear.

    `container` is `ts` or `mp4`. For `mp4` the caller writes the media
    initialization section first, then the media segment: the file (and so its
    hash) is both, and decodes on its own.
    """

    def __init__(self, base_dir, channel, quality, start, duration, container="ts"):
        self.base_dir = base_dir
        self.channel = channel
        self.quality = quality
        self.start = to_utc(start)
        self.duration = duration
        self.container = _check_container(container)
        temp_id = secrets.token_urlsafe(12)
        self.temp_path = segment_path(
            base_dir, channel, quality, self.start, duration, "temp", temp_id, container
        )
        os.makedirs(os.path.dirname(self.temp_path), exist_ok=True)
        self._file = open(self.temp_path, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.path = None

    def write(self, chunk):
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def hash(self):
        return encode_hash(self._hash.digest())

    def finish(self, type="full"):
        self._file.close()
        path = segment_path(
            self.base_dir, self.channel, self.quality, self.start, self.duration, type,
            self.hash, self.container,
        )  # fmt: skip
        os.replace(self.temp_path, path)
        self.path = path
        return path

    def abort(self):
        if not self._file.closed:
            self._file.close()
        if self.path is None:
            try:
                os.remove(self.temp_path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()


def atomic_write(path, data):
    """Write `data` (bytes, or an iterable of bytes) to `path` atomically.

    The bytes go to a hidden temp file in the same directory, which is then
    renamed over `path`: readers see the old file or the whole new one. On any
    error the temp file is removed and the error propagates.
    """
    directory, name = os.path.split(path)
    os.makedirs(directory or ".", exist_ok=True)
    temp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temp, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                for chunk in data:
                    f.write(chunk)
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass
        raise


# --- reading: choosing the segments for a time range -----------------------


def hours_for_range(start, end):
    """The hour directory names that may hold segments covering [start, end).

    Starts one hour before `start`: a segment that began in the previous hour
    may still cover it.
    """
    start, end = to_utc(start), to_utc(end)
    hour = start.replace(minute=0, second=0, microsecond=0) - ONE_HOUR
    hours = []
    while hour < end:
        hours.append(hour.strftime(HOUR_FORMAT))
        hour += ONE_HOUR
    return hours


# The common case: a readable (non-temp) segment with a well-formed hash (the
# last character of a 32-byte digest's base64 holds 4 data bits and 2 zero bits,
# hence its short alphabet). Anything else, durations of 300 s and more too
# (held to MAX_DURATION there), goes through `parse_segment_path`.
_OFFSET = r"[0-5]\d:[0-5]\d\.\d{6}"
_KIND = r"(?:[12]\d|\d)?\d(?:\.\d{1,6})?-(?:full|partial|suspect)"
_HASH = r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
_WELL_FORMED_RE = re.compile(rf"^{_OFFSET}-{_KIND}-{_HASH}\.(?:ts|mp4)$", re.MULTILINE | re.ASCII)
_OFFSET_RE, _KIND_RE = (re.compile(pattern, re.ASCII) for pattern in (_OFFSET, _KIND))
# A directory of one container is checked in one `fullmatch` over its names,
# each ended by a newline, capturing nothing (capturing the fields took half
# a listing's time). It checks the layout, `OFFSET-KIND-HASH` with a 12-character
# OFFSET and a KIND of digits, dots, `-` and letters; each distinct offset
# (`MM:SS.ffffff`) and kind (`2.000-full`) is checked once. Together that is
# exactly _WELL_FORMED_RE. Possessive, as nothing in it needs to backtrack.
_LAYOUT_RE = {
    ext: re.compile(rf"(?:.{{12}}-[0-9.]++-[a-z]++-{_HASH}\.{ext}\n)*+", re.ASCII)
    for ext in CONTAINERS
}
# Fields at fixed places in a name of that layout: cut out by C-level slicing.
_OFFSET_TEXT = operator.itemgetter(slice(0, 12))
_KIND_TEXT = {"ts": operator.itemgetter(slice(13, -47)), "mp4": operator.itemgetter(slice(13, -48))}
_HASH_TEXT = {"ts": operator.itemgetter(slice(-46, -3)), "mp4": operator.itemgetter(slice(-47, -4))}


class _Offsets(dict):
    """`MM:SS.ffffff` → timedelta from the hour's start, parsed on first use.

    ValueError (nothing stored) for a malformed one. The hours of a stream
    mostly share their starts (2 s segments: 1800), so lookups mostly hit;
    starts that drift (6.006 s segments) miss, hence emptied at LIMIT (~3 MB).
    """

    LIMIT = 20_000

    def __missing__(self, text):
        if not _OFFSET_RE.fullmatch(text):
            raise ValueError(f"bad start {text!r}")
        if len(self) >= self.LIMIT:
            self.clear()
        seconds = int(text[:2]) * 60 + int(text[3:5])
        value = self[text] = datetime.timedelta(microseconds=seconds * 1_000_000 + int(text[6:]))
        return value


_offsets = _Offsets()


@functools.lru_cache(maxsize=4096)
def _kind(text):
    """`2.000-full` → (duration, type); ValueError if not matching _KIND."""
    if not _KIND_RE.fullmatch(text):
        raise ValueError(f"bad duration and type {text!r}")
    duration, _, type = text.partition("-")
    return parse_duration(duration), type


_start, _duration, _type, _path = map(operator.attrgetter, ("start", "duration", "type", "path"))


def list_segments(hour_path):
    """Every readable segment in one hour directory, in time order.

    Skips dotfiles and `temp` files; a name that does not parse is logged and
    skipped so that one stray file cannot break a listing. A missing directory
    is an empty hour.
    """
    return _list_segments(hour_path)[0]


def _list_segments(hour_path):
    """`(list_segments(hour_path), True if they are known to join, as in _all_join)`."""
    try:
        names = os.listdir(hour_path)
    except (FileNotFoundError, NotADirectoryError):
        return [], None
    parts = hour_path.rstrip("/").split("/")
    channel, quality, hour = ([None, None, None] + parts)[-3:]
    try:
        hour_start = parse_hour(hour)
    except ValueError as e:
        logger.warning("Skipping directory %s: %s", hour_path, e)
        return [], None
    # Names are zero-padded from the minute on, so name order is time order.
    names.sort()
    # Thousands of new tuples would set off the cyclic garbage collector again
    # and again (it was a third of this function's time), though none can form
    # a cycle. Nothing here yields to another greenlet, so the pause is this loop's.
    with _gc_paused():
        return _parse_names(hour_path + "/", names, (channel, quality, hour, hour_start))


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector for a loop that only makes tuples and lists."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _well_formed_segments(prefix, names, container, hour):
    """`(segments, joins)` as in _list_segments, for sorted names of _LAYOUT_RE[container].

    `hour`: `(channel, quality, hour, hour_start)`. ValueError for a malformed
    offset or kind. Each step maps a C function over the names (Python code
    only for a new offset): this is the loop of every listing.
    """
    channel, quality, hour, hour_start = hour
    kinds = list(map(_KIND_TEXT[container], names))
    parsed = {text: _kind(text) for text in set(kinds)}
    if len(parsed) == 1:  # the usual hour: one duration and type
        (duration, type), n = parsed[kinds[0]], len(names)
        durations, types = [duration] * n, repeat(type)
    else:
        durations = list(map({text: d for text, (d, _) in parsed.items()}.__getitem__, kinds))
        types = map({text: t for text, (_, t) in parsed.items()}.__getitem__, kinds)
    starts = list(map(hour_start.__add__, map(_offsets.__getitem__, map(_OFFSET_TEXT, names))))
    segments = list(map(tuple.__new__, repeat(_LISTED[container]), zip(
        map(prefix.__add__, names), repeat(channel), repeat(quality), repeat(hour), starts,
        durations, types, map(_HASH_TEXT[container], names),
    )))  # fmt: skip
    # With every duration positive, joining also means one file per start.
    if not all(d and t == "full" for d, t in parsed.values()):
        return segments, None
    return segments, all(map(operator.eq, map(operator.add, starts, durations), starts[1:])) or None


def _parse_names(prefix, names, hour):
    """`(segments, joins)` as in _list_segments, for sorted `names` in `prefix`."""
    joined = "\n".join(names) + "\n"
    one_line_each = joined.count("\n") == len(names)  # no name holds a newline
    # The hour being recorded ends in a temp file: no use trying the whole hour.
    for container in CONTAINERS if one_line_each and "-temp-" not in names[-1] else ():
        if _LAYOUT_RE[container].fullmatch(joined):
            try:
                return _well_formed_segments(prefix, names, container, hour)
            except ValueError:
                break  # a malformed offset or kind: looked at name by name below
    # Some names need a closer look (temp files, strays, both containers).
    good = _WELL_FORMED_RE.findall(joined) if one_line_each else []
    mp4 = [name for name in good if name.endswith("4")]
    ts = [name for name in good if name.endswith("s")] if mp4 else good
    segments = _well_formed_segments(prefix, ts, "ts", hour)[0]
    if mp4:
        segments += _well_formed_segments(prefix, mp4, "mp4", hour)[0]
        segments.sort(key=_path)  # in name order, as the names were
    extra = []
    for name in sorted(set(names).difference(good)):
        if name.startswith(".") or "-temp-" in name:
            continue
        try:
            segment = parse_segment_path(prefix + name)
        except ValueError as e:
            logger.warning("Skipping unreadable file: %s", e)
            continue
        if segment.type != "temp":
            extra.append(segment)
    if extra:
        segments += extra
        segments.sort(key=_start)
    return segments, None


# Parsed hours, kept while their directory is unchanged: a live playlist or a
# long range asks for the same finished hours again and again, and listing
# plus parsing is most of get_best_segments' time. Bounded: about 0.4 KB a
# segment, so 128 hours of 2 s segments is under 100 MB.
HOUR_CACHE_SIZE = 128
# Directory mtimes tick coarsely (the kernel's clock tick), so a file added in
# the same tick as the listing would not change the mtime we saw. An hour is
# cached only once its mtime is older than this: nothing can be "racily clean".
HOUR_CACHE_SETTLE_NS = 2_000_000_000
_hour_cache = collections.OrderedDict()


def best_segments_in_hour(hour_path):
    """`best_segments_by_start(list_segments(hour_path))`, cached while unchanged."""
    return _hour(hour_path)[0]


def _hour(hour_path):
    """`(best segments, whether they all join)` for one hour directory, cached."""
    try:
        mtime = os.stat(hour_path).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return [], False
    cached = _hour_cache.get(hour_path)
    if cached is not None and cached[0] == mtime:
        _hour_cache.move_to_end(hour_path)
        return cached[1]
    with _gc_paused():  # as in list_segments, for all the hour's tuples at once
        segments, joins = _list_segments(hour_path)
        if not joins:
            starts = list(map(_start, segments))
            if not _increasing(starts):  # else already one file per start, in order
                segments = best_segments_by_start(segments)
                starts = list(map(_start, segments))
            joins = _all_join(segments, starts)
        hour = (segments, joins)
    # Listing and parsing an hour takes milliseconds of CPU that nothing else
    # in this process can use: let other greenlets (requests) run between
    # hours, so a long cold range never holds them up for all of it.
    let_others_run()
    if time.time_ns() - mtime > HOUR_CACHE_SETTLE_NS:
        _hour_cache[hour_path] = (mtime, hour)
        _hour_cache.move_to_end(hour_path)
        while len(_hour_cache) > HOUR_CACHE_SIZE:
            _hour_cache.popitem(last=False)
    return hour


def _increasing(starts):
    return all(map(operator.lt, starts, starts[1:]))


def _all_join(segments, starts):
    """True if there are segments, all `full`, each ending exactly where the next starts.

    Such an hour needs no walking through in `get_best_segments`: it joins on
    whole. `starts` are the segments' starts. Written as C-level maps, since
    it looks at every segment once.
    """
    if not segments:
        return False
    ends = map(operator.add, starts, map(_duration, segments))
    return all(map(operator.eq, ends, starts[1:])) and all(map("full".__eq__, map(_type, segments)))


def let_others_run():
    """Let every other greenlet, and every request waiting on its socket, go first.

    For long CPU-bound loops, between steps of a few milliseconds. Not
    `gevent.sleep(0)`: that runs only greenlets already runnable, so a request
    waiting to be read stayed waiting (measured: a `/files` request waited out
    a whole cold 24 h playlist, 150 ms). Any positive sleep waits for the next
    turn of the event loop, which polls the sockets.
    """
    gevent.sleep(0.000_001)


def clear_hour_cache():
    _hour_cache.clear()


def _file_size(segment):
    try:
        return os.stat(segment.path).st_size
    except OSError:
        return -1


def _choose(candidates):
    top_rank = max((TYPE_RANK[s.type], s.duration) for s in candidates)
    tied = [s for s in candidates if (TYPE_RANK[s.type], s.duration) == top_rank]
    if len(tied) > 1:
        tied.sort(key=lambda s: (_file_size(s), s.hash))
    return tied[-1]


def best_segments_by_start(segments):
    """From many files, the best one for each distinct start time, in time order.

    Best: `full` over `suspect` over `partial`; then the longest duration; then
    (only stat'ed when still tied) the largest file; then the hash, so that
    every node makes the same choice.
    """
    if _increasing(list(map(_start, segments))):
        # In order, one file per start: the common case (a listing is sorted).
        return list(segments)
    segments = sorted(segments, key=_start)  # linear when already in order
    best = []
    i, n = 0, len(segments)
    while i < n:
        j = i + 1
        start = segments[i].start
        while j < n and segments[j].start == start:
            j += 1
        best.append(segments[i] if j == i + 1 else _choose(segments[i:j]))
        i = j
    return best


def get_best_segments(hours_path, start, end):
    """The best segments covering [start, end), with `None` at every hole.

    `hours_path` is `BASE/<channel>/<quality>`. Two neighbouring segments join
    when one ends exactly where the next starts; a gap between them, or a
    `partial`/`suspect` segment (whose content stops short), is followed by a
    `None`. A `None` also starts the list if nothing covers `start` and ends it
    if nothing reaches `end`. A segment that overlaps the one before it (a
    stream that restarted with other timestamps) is skipped with a log line.
    `start == end` gives an empty list; an empty store gives `[None]`.
    """
    start, end = to_utc(start), to_utc(end)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if start == end:
        return []
    result = []
    previous_end = None  # end of result[-1] when it is a segment that joins on
    for hour in hours_for_range(start, end):
        segments, all_join = _hour(os.path.join(hours_path, hour))
        if all_join:
            # The usual hour: its segments join on whole, so the part in range
            # is found by bisection and taken as one slice when it continues
            # the result or begins it (each segment would be appended by the
            # first two cases below). Otherwise it is walked like any other.
            lo = 0
            if segments[0].start < start:
                # The last segment starting by `start`; it covers `start`
                # unless it is the hour's last and ends before.
                lo = bisect.bisect_right(segments, start, key=_start) - 1
                if segments[lo].end <= start:
                    lo += 1
            hi = bisect.bisect_left(segments, end, lo=lo, key=_start)
            if lo >= hi:
                continue  # nothing of this hour is in range
            head = segments[lo]
            if previous_end == head.start or not result:
                if not result and head.start > start:
                    result.append(None)
                result += segments[lo:hi]
                previous_end = segments[hi - 1].end
                continue
        for segment in segments:
            segment_start = segment.start
            if segment_start >= end:
                break
            segment_end = segment_start + segment.duration
            if segment_end <= start:
                continue
            if previous_end == segment_start:
                result.append(segment)  # the common case: an exact join
            elif not result:
                if segment_start > start:
                    result.append(None)
                result.append(segment)
            elif result[-1] is None:
                result.append(segment)
            elif result[-1].end > segment_start:
                logger.info(
                    "Skipping %s: it overlaps %s (ending %s)",
                    segment.path,
                    result[-1].path,
                    result[-1].end.isoformat(),
                )
                continue
            else:
                result += [None, segment]  # a gap, or after a partial
            previous_end = None if segment.type in ("partial", "suspect") else segment_end
    if not result or (result[-1] is not None and (result[-1].end < end or result[-1].is_partial)):
        result.append(None)
    return result
