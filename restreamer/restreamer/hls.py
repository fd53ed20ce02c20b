"""HLS playlists (RFC 8216) from segments: pure functions, no I/O.

`media_playlist` turns the output of `get_best_segments` into a media playlist;
`master_playlist` lists one variant per quality. Tag names are written as the
RFC spells them, so each can be grepped back to its section.

Choices, and the RFC text behind them:
- `#EXT-X-VERSION:3`: EXTINF durations are decimal (§4.3.1.1 needs version 3);
  6 once the playlist has an `EXT-X-MAP` (§7: version 6 for EXT-X-MAP outside
  I-frame playlists; its byte ranges need version 4).
- `#EXT-X-TARGETDURATION` is the longest segment rounded to the nearest
  integer, half up (§4.3.3.1: "The EXTINF duration of each Media Segment in
  the Playlist file, when rounded to the nearest integer, MUST be less than or
  equal to the target duration").
- `#EXT-X-PROGRAM-DATE-TIME` on every segment, in milliseconds with `Z`, so a
  player (and the editor) can map playback position to broadcast time even
  across holes.
- `#EXT-X-DISCONTINUITY` before the first segment after every hole (§4.3.2.3):
  the timestamps jump there, and a partial segment may stop early.
- A finished range is `#EXT-X-PLAYLIST-TYPE:VOD` with `#EXT-X-ENDLIST`. A range
  still being recorded is `#EXT-X-PLAYLIST-TYPE:EVENT` without ENDLIST: the
  player reloads it and plays new segments as they are appended. (EVENT
  playlists may only grow at the end; a hole that the backfiller fills later
  breaks that promise, and players will only pick the new segment up on a
  fresh load.)

Fragmented MP4. A stored `.mp4` file is its init section followed by its media
segment (see docs/STORE.md), and consecutive files usually carry the very same
init section. The playlist points into the files themselves, so any static
file server (nginx in front of `/segments/`) can serve them from disk:
- `#EXT-X-MAP:URI="<file>",BYTERANGE="<init size>@0"` names the init section
  of the first file of each run of segments whose init sections are
  byte-identical (§4.3.2.5: a map applies to every segment after it until the
  next map);
- every segment has `#EXT-X-BYTERANGE:<media size>@<init size>` (§4.3.2.2), so
  a player never reads the init section twice (a second `moov` inside a
  segment makes demuxers complain);
- a new map comes with `#EXT-X-DISCONTINUITY` wherever the init section or the
  container changes (§4.3.3.6/§6.2.1: a change of file format, tracks or
  encoding parameters needs one).
- MPEG-TS segments before any fMP4 one are listed as they always were. After
  one, a map is in force and cannot be dropped, so TS segments get their own
  map: the PAT and PMT at the start of the first TS file of the run, the
  "Media Initialization Section" of a TS segment in §3.2 (each TS segment
  carries its own PAT and PMT too, so it is listed whole).
- A segment whose init section cannot be found (a body cut short inside it, a
  file that is not what its name says) cannot be played: it is left out, as a
  hole.
"""

import datetime
import functools
import itertools
import operator
from typing import NamedTuple

from common.segments import format_duration

# Used for an empty live playlist, which has no segment to measure; the
# player reloads it every target duration, and Twitch's segments last 2 s.
EMPTY_TARGET_DURATION = 2  # seconds

ONE_SECOND_US = 1_000_000


ONE_MICROSECOND = datetime.timedelta(microseconds=1)
_duration = operator.attrgetter("duration")
_hour = operator.attrgetter("hour")
_path = operator.attrgetter("path")
_container = operator.attrgetter("container")


def _micros(duration):
    return duration // ONE_MICROSECOND


# EXTINF's decimal seconds are the store's duration format. A stream has a
# handful of distinct durations: each is formatted once.
format_extinf = functools.lru_cache(maxsize=1024)(format_duration)


def format_program_date_time(dt):
    """`2026-11-28T13:59:42.000Z`: UTC, milliseconds (truncated), `Z`."""
    text = dt.isoformat(timespec="milliseconds")
    if text.endswith("+00:00"):  # already UTC, as every start in the store is
        return text[:-6] + "Z"
    dt = dt.astimezone(datetime.UTC).replace(tzinfo=None)
    return dt.isoformat(timespec="milliseconds") + "Z"


def target_duration(segments):
    """The longest duration among `segments`, rounded to the nearest second, half up."""
    return _round_seconds(max((s.duration for s in segments if s is not None), default=None))


def _round_seconds(longest):
    if longest is None:
        return EMPTY_TARGET_DURATION
    return max(1, (_micros(longest) + ONE_SECOND_US // 2) // ONE_SECOND_US)


def segment_entry(segment, uri, layout=None):
    """The lines of one segment: its broadcast time, duration, byte range
    (when `layout`, the segment's `common.layout.Layout`, is given) and URI.

    A stored segment (one with an hour) starts at its hour plus the
    `MM:SS.ffffff` its name begins with, so its hour and the name's first nine
    characters are `format_program_date_time(segment.start)` without the
    `Z`, in a fifth of the time of formatting the datetime. With a
    DirectoryURIs, the path is split once for both (a day of fMP4 entries,
    which go one at a time, in an eighth less time).
    """
    if segment.hour is None:
        program_date_time = format_program_date_time(segment.start)
        link = uri(segment)
    else:
        path, _, name = segment.path.rpartition("/")
        program_date_time = f"{segment.hour}:{name[:9]}Z"
        link = uri.of(path, name) if isinstance(uri, DirectoryURIs) else uri(segment)
    byterange = ""
    if layout is not None:
        byterange = f"#EXT-X-BYTERANGE:{layout.media_size}@{layout.init_size}\n"
    return (
        f"#EXT-X-PROGRAM-DATE-TIME:{program_date_time}\n"
        f"#EXTINF:{format_extinf(segment.duration)},\n"
        f"{byterange}{link}\n"
    )


def map_tag(segment, uri, layout):
    """The EXT-X-MAP naming `segment`'s init section (§4.3.2.5; BYTERANGE is a
    quoted-string there, unlike EXT-X-BYTERANGE's value)."""
    return f'#EXT-X-MAP:URI="{uri(segment)}",BYTERANGE="{layout.init_size}@0"\n'


BASE_VERSION = 3
MAP_VERSION = 6


# A live playlist's entries grow by one chunk per reload; past this many they
# are joined into one, so a response is never thousands of small writes.
MAX_CHUNKS = 32


class Entries(NamedTuple):
    """The formatted entries of a run of segments, and what continuing them needs.

    `chunks` are the entries as bytes (a playlist is ASCII: URIs are
    percent-encoded), kept in pieces so that continuing them copies nothing;
    `longest` is the longest duration so far (None if no segment yet),
    `after_hole` whether the run ended in a hole, `written` whether any entry
    was written (a hole before the first entry needs no tag), `map_key` what
    the EXT-X-MAP in force names (None before any: `("mp4", init hash)` or
    `("ts",)`), `version` the EXT-X-VERSION the tags written need.
    """

    chunks: tuple = ()
    longest: datetime.timedelta | None = None
    after_hole: bool = False
    written: bool = False
    map_key: tuple | None = None
    version: int = BASE_VERSION


class DirectoryURIs:
    """Segment URIs made of their directory's URI and their file name.

    `directory(path)` gives the URI of the directory at `path` (a segment
    path's directory part), ending in `/`; it is asked once per directory (an
    lru_cache of `cache_size`). The file name is a store's segment name, as
    parsing checks it (`MM:SS.ffffff-<duration>-<type>-<hash>.<ext>`: letters,
    digits and `._-`, and one `:`, its third character), so only that `:` is
    escaped. Called on a
    segment, gives its URI; `format_entries` given one formats a run of stored
    segments with no Python function call per segment.
    """

    def __init__(self, directory, cache_size=4096):
        self.directory = functools.lru_cache(maxsize=cache_size)(directory)

    def __call__(self, segment):
        path, _, name = segment.path.rpartition("/")
        return self.of(path, name)

    def of(self, path, name):
        """The URI of the segment named `name` in the directory at `path`."""
        return self.directory(path) + name.replace(":", "%3A")


def _stored_entries(run, uri, parts):
    """Append `segment_entry(segment, uri)` of each of `run` to `parts`, as
    bytes, one piece an hour; `uri` a DirectoryURIs. Returns the longest
    duration in `run`.

    A day of entries is 43,200 strings of ~130 characters, and what costs is
    making Python strings, each about as dear as a short function call:
    `rpartition` on each path (a tuple and two strings), the escaped name,
    the entry, its bytes. So the run is cut into hours (consecutive segments
    of one hour share a directory as a store lists them), and each hour's
    entries are made from slices of each path at the one offset where its
    name starts, one f-string each, encoded once per hour: a day in two
    thirds of the time of a comprehension calling `rpartition`. The name is
    a store's, as DirectoryURIs requires; an hour whose paths are not all in
    its first one's directory with a `:` third in the name (one of another
    store, or not a store's name) is formatted segment by segment instead.
    """
    longest = None
    for hour, group in itertools.groupby(run, _hour):
        group = list(group)
        durations = list(map(_duration, group))
        text = None
        if hour is not None:  # None: not a stored segment, its time formatted whole
            text = _hour_entries(hour, list(map(_path, group)), durations, uri)
        if text is None:
            text = "".join([segment_entry(segment, uri) for segment in group])
        parts.append(text.encode())
        group_longest = max(durations)
        if longest is None or group_longest > longest:
            longest = group_longest
    return longest


def _entries(segments, layouts, uri):
    """The entries of `segments`, all of one hour, as bytes: each with its
    byte range in `layouts` (a Layout each) unless that is None."""
    hour = segments[0].hour
    text = None
    if hour is not None and isinstance(uri, DirectoryURIs):
        paths, durations = list(map(_path, segments)), list(map(_duration, segments))
        text = _hour_entries(hour, paths, durations, uri, layouts)
    if text is None:
        if layouts is None:
            layouts = [None] * len(segments)
        text = "".join(map(segment_entry, segments, itertools.repeat(uri), layouts))
    return text.encode()


def _hour_entries(hour, paths, durations, uri, layouts=None):
    """The entries of consecutive stored segments of `hour` (their paths and
    durations; their byte ranges in `layouts` unless None), or None unless
    all are in one directory."""
    count = len(paths)
    k = paths[0].rfind("/") + 1
    prefix = paths[0][:k]
    # The strings starting with `prefix` are one stretch of the sorted order,
    # so if the least and the greatest path start with it, all do (half the
    # time of asking each).
    if not (
        k
        and min(paths).startswith(prefix)
        and max(paths).startswith(prefix)
        and list(map(operator.getitem, paths, itertools.repeat(slice(k + 2, k + 3)))).count(":")
        == count
    ):
        return None
    directory = uri.directory(prefix[:-1])
    head = f"#EXT-X-PROGRAM-DATE-TIME:{hour}:"
    # The name's `MM:SS.fff`, its `MM` and what follows its `:`. Slice objects
    # made once: `path[a:b]` would make one per segment (a day 10% slower).
    clock, minutes, rest = slice(k, k + 9), slice(k, k + 2), slice(k + 3, None)
    if layouts is None and durations.count(durations[0]) == count:
        middle = f"Z\n#EXTINF:{format_extinf(durations[0])},\n{directory}"
        return "".join([
            f"{head}{path[clock]}{middle}{path[minutes]}%3A{path[rest]}\n" for path in paths
        ])  # fmt: skip
    extinfs = {d: f"Z\n#EXTINF:{format_extinf(d)},\n" for d in set(durations)}
    if layouts is None:
        byteranges = [""] * count
    else:
        byteranges = [f"#EXT-X-BYTERANGE:{f.media_size}@{f.init_size}\n" for f in layouts]
    return "".join([
        f"{head}{path[clock]}{extinf}{byterange}{directory}{path[minutes]}%3A{path[rest]}\n"
        for path, extinf, byterange in zip(
            paths, map(extinfs.__getitem__, durations), byteranges, strict=True
        )
    ])  # fmt: skip


def format_entries(segments, uri, *, layout=None, before=Entries()):
    """The entries for `segments` (SegmentInfo, or None at a hole), continuing `before`.

    `uri(segment)` gives each segment's URI. `layout(segment)` gives the
    `common.layout.Layout` of an fMP4 segment (and of a TS one once a map is in
    force), or None when it has none (the segment is then left out as a hole);
    it is needed only when there are `.mp4` segments. Passing the Entries of
    the segments that come first as `before` gives the same result as
    formatting the whole list, so a live playlist need only format what is new.

    Each run of MPEG-TS segments between holes, before any map, is formatted in
    one comprehension (with a `DirectoryURIs`, one an hour with no call per
    segment, see `_stored_entries`): a day of segments (43,200) takes about
    20 ms of CPU, so entries are not worth caching on their own (a cache of
    them made a cold day slower, its lookups and inserts costing more than
    they saved). Runs that hold fMP4 segments, or come after a map, go segment
    by segment for their tags (each may change the map in force), the entries
    between two tags formatted together as above: a day of fMP4 in about 60 ms
    with its layouts cached.
    """
    if not isinstance(segments, list):
        segments = list(segments)
    parts = []
    after_hole = before.after_hole
    written = before.written
    longest = before.longest
    map_key = before.map_key
    version = before.version
    i, n = 0, len(segments)
    while i < n:
        if segments[i] is None:
            after_hole = True
            i += 1
            continue
        try:
            j = segments.index(None, i)
        except ValueError:
            j = n
        run = segments[i:j]
        i = j
        if map_key is None and "mp4" not in map(_container, run):
            if after_hole and written:
                parts.append(b"#EXT-X-DISCONTINUITY\n")
            after_hole = False
            written = True
            if isinstance(uri, DirectoryURIs):
                run_longest = _stored_entries(run, uri, parts)
            else:
                parts.append(b"".join([segment_entry(segment, uri).encode() for segment in run]))
                run_longest = max(map(_duration, run))
            if longest is None or run_longest > longest:
                longest = run_longest
            continue
        if layout is None:
            raise ValueError(f"{run[0].path}: fMP4 playlists need the segments' layout")
        # Entries not written yet, all of one hour and container, with no tag
        # between them: formatted together (see `_entries`) before the next tag.
        pending, pending_layouts, pending_mp4 = [], [], False
        for segment in run:
            mp4 = segment.container == "mp4"
            if not mp4 and map_key is None:  # TS before any map: listed as always
                found = None
            else:
                found = layout(segment)
                if found is None:
                    after_hole = True  # unplayable: a hole
                    continue
            key = None if found is None else ("mp4", found.init_hash) if mp4 else ("ts",)
            if pending and (
                key != map_key
                or after_hole
                or mp4 != pending_mp4
                or segment.hour != pending[0].hour
            ):
                parts.append(_entries(pending, pending_layouts if pending_mp4 else None, uri))
                pending, pending_layouts = [], []
            if key != map_key:
                if written:
                    parts.append(b"#EXT-X-DISCONTINUITY\n")
                parts.append(map_tag(segment, uri, found).encode())
                map_key = key
                version = max(version, MAP_VERSION)
                after_hole = False
            if after_hole and written:
                parts.append(b"#EXT-X-DISCONTINUITY\n")
            after_hole = False
            pending.append(segment)
            pending_layouts.append(found)
            pending_mp4 = mp4
            written = True
            if longest is None or segment.duration > longest:
                longest = segment.duration
        if pending:
            parts.append(_entries(pending, pending_layouts if pending_mp4 else None, uri))
    chunks = before.chunks + (b"".join(parts),) if parts else before.chunks
    if len(chunks) > MAX_CHUNKS:
        chunks = (b"".join(chunks),)
    return Entries(chunks, longest, after_hole, written, map_key, version)


def assemble(entries, *, ended):
    """A media playlist from its entries, as a list of bytes to send in turn.

    `ended`: the range is finished (VOD). Holes at the very start or end of
    the list need no tag: there is no segment on their other side.
    """
    header = (
        f"#EXTM3U\n#EXT-X-VERSION:{entries.version}\n"
        f"#EXT-X-TARGETDURATION:{_round_seconds(entries.longest)}\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}\n"
    ).encode()
    footer = [b"#EXT-X-ENDLIST\n"] if ended else []
    return [header, *entries.chunks, *footer]


def media_playlist(segments, uri, *, ended, layout=None):
    """The media playlist for `segments` (SegmentInfo, or None at a hole), as text.

    `ended` says the range is finished: no segment will ever be added to it,
    so the playlist is VOD. See `format_entries` for `uri` and `layout`.
    """
    entries = format_entries(segments, uri, layout=layout)
    return b"".join(assemble(entries, ended=ended)).decode()


class Variant(NamedTuple):
    """One quality in a master playlist.

    `bandwidth` is the peak bit rate of a segment (bits/s, which §4.3.4.2
    requires), `average_bandwidth` the whole range's; `resolution` is
    `(width, height)`, `codecs` an RFC 6381 string and `frame_rate` frames a
    second, each None when unknown.
    """

    quality: str
    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None
    codecs: str | None = None
    frame_rate: float | None = None


def master_playlist(variants):
    """A master playlist listing `variants` in the order given."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for variant in variants:
        attributes = [f"BANDWIDTH={max(1, int(variant.bandwidth))}"]
        if variant.average_bandwidth:
            attributes.append(f"AVERAGE-BANDWIDTH={int(variant.average_bandwidth)}")
        if variant.resolution:
            width, height = variant.resolution
            attributes.append(f"RESOLUTION={int(width)}x{int(height)}")
        if variant.codecs:
            attributes.append(f'CODECS="{variant.codecs}"')
        if variant.frame_rate:
            # §4.3.4.2: "a decimal-floating-point ... rounded to three decimal places"
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        lines.append(f"#EXT-X-STREAM-INF:{','.join(attributes)}")
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"


def bandwidths(segments, size):
    """(peak, average) bit rate of `segments` in bits/s; `size(segment)` gives bytes.

    Partial segments are left out of the peak (their duration overstates what
    they hold, which makes them look slow, never fast; and a segment whose size
    cannot be read — `size` returns None — is skipped). (0, 0) when nothing is left.
    """
    peak = 0.0
    total_bytes = 0
    total_micros = 0
    for segment in segments:
        if segment is None or segment.is_partial:
            continue
        micros = _micros(segment.duration)
        nbytes = size(segment)
        if nbytes is None or micros <= 0:
            continue
        peak = max(peak, nbytes * 8 * ONE_SECOND_US / micros)
        total_bytes += nbytes
        total_micros += micros
    if not total_micros:
        return 0, 0
    return round(peak), round(total_bytes * 8 * ONE_SECOND_US / total_micros)
