"""HLS playlists (RFC 8216) from segments: pure functions, no I/O.

`media_playlist` turns the output of `get_best_segments` into a media playlist;
`master_playlist` lists one variant per quality. Tag names are written as the
RFC spells them, so each can be grepped back to its section.

Choices, and the RFC text behind them:
- `#EXT-X-VERSION:3`: EXTINF durations are decimal (§4.3.1.1 needs version 3).
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
"""

import datetime
import functools
from typing import NamedTuple

# Used for an empty live playlist, which has no segment to measure; the
# player reloads it every target duration, and Twitch's segments last 2 s.
EMPTY_TARGET_DURATION = 2  # seconds

ONE_SECOND_US = 1_000_000


ONE_MICROSECOND = datetime.timedelta(microseconds=1)


def _micros(duration):
    return duration // ONE_MICROSECOND


# A stream has a handful of distinct durations: each is formatted once.
@functools.lru_cache(maxsize=1024)
def format_extinf(duration):
    """A segment's duration for EXTINF: seconds with millisecond (or finer) precision."""
    micros = _micros(duration)
    seconds, micros = divmod(micros, ONE_SECOND_US)
    if micros % 1000 == 0:
        return f"{seconds}.{micros // 1000:03d}"
    return f"{seconds}.{micros:06d}"


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


def segment_entry(segment, uri):
    """The three lines of one segment: its broadcast time, duration and URI."""
    return (
        f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(segment.start)}\n"
        f"#EXTINF:{format_extinf(segment.duration)},\n"
        f"{uri(segment)}\n"
    )


# A live playlist's entries grow by one chunk per reload; past this many they
# are joined into one, so a response is never thousands of small writes.
MAX_CHUNKS = 32


class Entries(NamedTuple):
    """The formatted entries of a run of segments, and what continuing them needs.

    `chunks` are the entries as bytes (a playlist is ASCII: URIs are
    percent-encoded), kept in pieces so that continuing them copies nothing;
    `longest` is the longest duration so far (None if no segment yet),
    `after_hole` whether the run ended in a hole, `written` whether any entry
    was written (a hole before the first entry needs no tag).
    """

    chunks: tuple = ()
    longest: datetime.timedelta | None = None
    after_hole: bool = False
    written: bool = False


def format_entries(segments, uri, *, cache=None, before=Entries()):
    """The entries for `segments` (SegmentInfo, or None at a hole), continuing `before`.

    `uri(segment)` gives each segment's URI. `cache`, a dict, keeps each
    segment's entry by path across calls (the caller bounds it, and uses one
    cache per `uri`): a long range or a live playlist reloaded every few
    seconds formats each segment once. Passing the Entries of the segments
    that come first as `before` gives the same result as formatting the whole
    list, so a live playlist need only format what is new.
    """
    if cache is None:
        cache = {}
    get = cache.get
    parts = []
    append = parts.append
    after_hole = before.after_hole
    written = before.written
    longest = before.longest
    for segment in segments:
        if segment is None:
            after_hole = True
            continue
        if after_hole and written:
            append(b"#EXT-X-DISCONTINUITY\n")
        after_hole = False
        entry = get(segment.path)
        if entry is None:
            entry = cache[segment.path] = segment_entry(segment, uri).encode()
        append(entry)
        written = True
        if longest is None or segment.duration > longest:
            longest = segment.duration
    chunks = before.chunks + (b"".join(parts),) if parts else before.chunks
    if len(chunks) > MAX_CHUNKS:
        chunks = (b"".join(chunks),)
    return Entries(chunks, longest, after_hole, written)


def assemble(entries, *, ended):
    """A media playlist from its entries, as a list of bytes to send in turn.

    `ended`: the range is finished (VOD). Holes at the very start or end of
    the list need no tag: there is no segment on their other side.
    """
    header = (
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        f"#EXT-X-TARGETDURATION:{_round_seconds(entries.longest)}\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}\n"
    ).encode()
    footer = [b"#EXT-X-ENDLIST\n"] if ended else []
    return [header, *entries.chunks, *footer]


def media_playlist(segments, uri, *, ended, cache=None):
    """The media playlist for `segments` (SegmentInfo, or None at a hole), as text.

    `ended` says the range is finished: no segment will ever be added to it,
    so the playlist is VOD. See `format_entries` for `uri` and `cache`.
    """
    entries = format_entries(segments, uri, cache=cache)
    return b"".join(assemble(entries, ended=ended)).decode()


class Variant(NamedTuple):
    """One quality in a master playlist.

    `bandwidth` is the peak bit rate of a segment (bits/s, which §4.3.4.2
    requires), `average_bandwidth` the whole range's; `resolution` is
    `(width, height)` and `codecs` an RFC 6381 string, both None when unknown.
    """

    quality: str
    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None
    codecs: str | None = None


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
