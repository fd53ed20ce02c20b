"""HLS playlists: parsing, naming variants, spotting ads, and placing segments in time.

Pure code, no I/O: the worker fetches text and hands it here;
tests feed it tables of playlists. Parsing itself is the `m3u8` library's; this
module turns its objects into what the downloader needs, and refuses what the
store cannot hold. Tag names are written out where they are handled, so the
spec can be grepped against the code.
"""

import collections
import datetime
import logging
import re
import urllib.parse
from dataclasses import dataclass

import m3u8

from common.times import parse_time

logger = logging.getLogger(__name__)

ONE_MS = datetime.timedelta(milliseconds=1)
# How far a segment's EXT-X-PROGRAM-DATE-TIME may disagree with where the previous
# segment ends (its own PDT plus EXTINF) and still be taken as the same instant.
# PDT has millisecond precision and EXTINF often three decimals, so a steady
# stream's PDTs and durations disagree by about a millisecond now and then;
# less than a frame even at 60 fps (16.7 ms) cannot be missing video.
JOIN_TOLERANCE = datetime.timedelta(milliseconds=10)
# How many placed segments a Timeline remembers, to recognise them when a
# playlist repeats or goes backwards: hours of 2 s segments, a few hundred KB.
TIMELINE_MEMORY = 4000
# Twitch marks its server-side ad insertions with this EXT-X-DATERANGE class or an
# ID prefix, and titles the ad segments' EXTINF "Amazon|<id>".
TWITCH_AD_CLASS = "twitch-stitched-ad"
TWITCH_AD_ID_PREFIX = "stitched-ad-"
AD_TITLE_PREFIX = "Amazon"


class PlaylistError(Exception):
    """A playlist that cannot be used. `kind` is a short label for metrics."""

    kind = "bad_playlist"


class UnsupportedPlaylist(PlaylistError):
    """A valid playlist whose segments the store cannot hold (encrypted)."""

    kind = "unsupported_playlist"


def micros(seconds):
    """Float seconds (as m3u8 parses EXTINF) → timedelta, rounded to the microsecond."""
    return datetime.timedelta(microseconds=round(seconds * 1_000_000))


def _daterange_time(text):
    """An EXT-X-DATERANGE date (ISO 8601, naive taken as UTC) → aware UTC, or None.

    A missing or malformed date makes the tag unusable, not the playlist: the
    caller skips the tag.
    """
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def load(text, url):
    """Text → m3u8 object; PlaylistError if it is not a playlist at all."""
    if not text.lstrip("\ufeff \r\n\t").startswith("#EXTM3U"):
        first = text.strip().splitlines()[0][:80] if text.strip() else "(empty)"
        raise PlaylistError(f"{url}: not an HLS playlist (starts {first!r})")
    try:
        return m3u8.loads(text, uri=url)
    except Exception as e:
        raise PlaylistError(f"{url}: unparseable playlist: {e}") from None


# --- master playlists: which URL is which quality ------------------------------


def _resolution_name(stream_info):
    if stream_info.resolution:
        name = f"{stream_info.resolution[1]}p"
        if stream_info.frame_rate and stream_info.frame_rate > 31:
            name += f"{round(stream_info.frame_rate)}"
        return name
    codecs = stream_info.codecs or ""
    if codecs and all(c.strip().startswith("mp4a") for c in codecs.split(",")):
        return "audio_only"
    return None


def _media_name(master, playlist):
    """The NAME of the EXT-X-MEDIA rendition group a variant's VIDEO= points at."""
    group = playlist.stream_info.video
    for media in master.media:
        if media.type == "VIDEO" and media.group_id == group and media.name:
            return media.name
    return None


def _clean_name(name):
    name = re.sub(r"\s*\(source\)\s*", "", name).strip()
    name = re.sub(r"[^A-Za-z0-9_+-]+", "_", name)
    return name or None


def name_variants(master):
    """A master playlist (EXT-X-STREAM-INF entries) → {quality: absolute URL}.

    `source` is the variant with the highest BANDWIDTH; ties go to the larger
    RESOLUTION (encoders often write one BANDWIDTH for every variant). The others
    are named by their rendition group's NAME, else by resolution (`480p`,
    `720p60` above 31 fps, `audio_only`); an HEVC or AV1 variant's name gets
    the codec as a suffix (`480p_h265`), as Twitch's do (`name_twitch_variants`).
    When two variants would still get the same name, the one with the higher
    bandwidth keeps it.
    """
    playlists = sorted(
        master.playlists,
        key=lambda p: (
            p.stream_info.bandwidth or 0,
            (p.stream_info.resolution or (0, 0))[0] * (p.stream_info.resolution or (0, 0))[1],
        ),
        reverse=True,
    )
    names = {}
    for index, playlist in enumerate(playlists):
        if index == 0:
            name = "source"
        else:
            media_name = _media_name(master, playlist)
            name = _with_codec(
                (_clean_name(media_name) if media_name else None)
                or _resolution_name(playlist.stream_info),
                codec_family(playlist.stream_info.codecs),
            )
        if name and name not in names:
            names[name] = playlist.absolute_uri
    return names


def _with_codec(name, family):
    """H.264 (and unknown) renditions keep their name; HEVC and AV1 ones say so."""
    return f"{name}_{family}" if name and family in ("h265", "av1") else name


# Video codec families by their RFC 6381 CODECS prefix, named as Twitch's
# `supported_codecs` names them. A metric label and a quality suffix, so few values.
CODEC_FAMILIES = {"avc1": "h264", "avc3": "h264", "hvc1": "h265", "hev1": "h265", "av01": "av1"}


def codec_family(codecs):
    """A CODECS attribute (`hvc1.2.4.L150.B0,mp4a.40.2`) → `h264`, `h265`, `av1`,
    `audio` (audio codecs only) or `unknown` (none given, or none known)."""
    parts = [c.strip().split(".", 1)[0].lower() for c in (codecs or "").split(",") if c.strip()]
    for part in parts:
        if part in CODEC_FAMILIES:
            return CODEC_FAMILIES[part]
    if parts and all(p in ("mp4a", "ac-3", "ec-3", "opus") for p in parts):
        return "audio"
    return "unknown"


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)')


def _stream_inf_attributes(text):
    """Each EXT-X-STREAM-INF's attribute list, raw, in order (RFC 8216 §4.2).

    The m3u8 library keeps only the attributes it knows; Twitch's usher v2 names
    its renditions in its own (`IVS-NAME`, `IVS-VARIANT-SOURCE`).
    """
    found = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            found.append(
                {
                    key: value.strip('"')
                    for key, value in _ATTRIBUTE.findall(line[len("#EXT-X-STREAM-INF:") :])
                }
            )
    return found


def name_twitch_variants(master, text=None):
    """Twitch's master playlist → ({quality: URL}, {quality: codec family}).

    The source rendition becomes `source`: usher v2 marks it
    `IVS-VARIANT-SOURCE=true` on its EXT-X-STREAM-INF; v1 put it in the rendition
    group `chunked` with a NAME ending "(source)". The others keep Twitch's own
    name (v2's `IVS-NAME`, v1's EXT-X-MEDIA NAME: `720p60`, `480p30`,
    `audio_only`). An H.264 rendition keeps the plain name; an HEVC or AV1 one
    gets the codec as a suffix (`1440p60_h265`, `1080p60_av1`), so that every
    name always means one codec and a transcode of the same resolution stays
    choosable, whatever else Twitch offers that day. `text` is the playlist's
    text, for the attributes the m3u8 library does not keep.
    """
    extra = _stream_inf_attributes(text) if text is not None else []
    if len(extra) != len(master.playlists):
        extra = [{} for _ in master.playlists]
    names = {}
    codecs = {}
    for playlist, attributes in zip(master.playlists, extra, strict=True):
        group = playlist.stream_info.video
        family = codec_family(playlist.stream_info.codecs)
        media_name = attributes.get("IVS-NAME") or _media_name(master, playlist) or group or ""
        source = attributes.get("IVS-VARIANT-SOURCE", "").lower() == "true"
        if source or group == "chunked" or "(source)" in media_name:
            name = "source"
        else:
            name = _with_codec(
                _clean_name(media_name) or _resolution_name(playlist.stream_info), family
            )
        if name and name not in names:
            names[name] = playlist.absolute_uri
            codecs[name] = family
    return names, codecs


# --- media playlists -----------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    """A sub-range of a resource (EXT-X-BYTERANGE, EXT-X-MAP's BYTERANGE): bytes
    `offset` to `offset + length - 1`, as an HTTP Range header asks for them."""

    length: int
    offset: int

    @property
    def header(self):
        return f"bytes={self.offset}-{self.offset + self.length - 1}"


@dataclass(frozen=True)
class InitSection:
    """An fMP4 media initialization section (EXT-X-MAP): what every segment after
    it needs in front to be decodable. Equal sections are fetched once."""

    uri: str  # absolute
    byterange: ByteRange | None


@dataclass(frozen=True)
class Segment:
    """One segment entry of a media playlist."""

    uri: str  # absolute
    sequence: int
    duration: datetime.timedelta  # EXTINF
    # EXT-X-PROGRAM-DATE-TIME, given or carried from an earlier segment plus
    # durations; None when the playlist has none at all.
    pdt: datetime.datetime | None
    title: str
    ad: str | None  # why it is an ad (for metrics), None for content
    discontinuity: bool
    byterange: ByteRange | None = None  # EXT-X-BYTERANGE: only part of `uri`
    init: InitSection | None = None  # EXT-X-MAP in force: an fMP4 segment

    @property
    def container(self):
        """The store's container for it: `mp4` with an init section, else `ts`."""
        return "mp4" if self.init is not None else "ts"


@dataclass(frozen=True)
class MediaPlaylist:
    segments: list
    target_duration: float
    ended: bool  # EXT-X-ENDLIST: the stream ended (for now)
    has_pdt: bool


def _ad_ranges(playlist):
    """Time ranges that EXT-X-DATERANGE tags mark as ads: [(start, end or None, kind)].

    Twitch's stitched ads carry CLASS or ID and a DURATION; SCTE-35 splices carry
    SCTE35-OUT with a DURATION, PLANNED-DURATION or END-DATE, and are closed by a
    later SCTE35-IN with the same ID. A range with no end lasts to the end of
    the playlist.
    """
    ranges = {}
    closes = {}
    dateranges = [d for s in playlist.segments for d in s.dateranges] + list(
        getattr(playlist, "dateranges", None) or []
    )
    for daterange in dateranges:
        start = _daterange_time(daterange.start_date)
        if start is None:
            continue
        if daterange.scte35_in is not None and daterange.scte35_out is None:
            closes[daterange.id] = _daterange_time(daterange.end_date) or start
            continue
        twitch = daterange.class_ == TWITCH_AD_CLASS or (daterange.id or "").startswith(
            TWITCH_AD_ID_PREFIX
        )
        if not twitch and daterange.scte35_out is None:
            continue
        length = daterange.duration or daterange.planned_duration
        if length is not None:
            end = start + micros(length)
        else:
            end = _daterange_time(daterange.end_date)
        ranges[daterange.id] = (start, end, "twitch_daterange" if twitch else "scte35_daterange")
    result = []
    for id, (start, end, kind) in ranges.items():
        if end is None:
            end = closes.get(id)
        result.append((start, end, kind))
    return result


def _ad_reason(segment, pdt, duration, ranges):
    """Whether a segment is an ad, and how we know."""
    if (segment.title or "").startswith(AD_TITLE_PREFIX):
        return "twitch_title"
    if segment.cue_out or segment.cue_out_start:  # EXT-X-CUE-OUT / EXT-X-CUE-OUT-CONT
        return "scte35_cue"
    if pdt is not None:
        middle = pdt + duration / 2
        for start, end, kind in ranges:
            if start <= middle and (end is None or middle < end):
                return kind
    return None


def parse_media_playlist(text, url):
    """Media playlist text → MediaPlaylist.

    Raises PlaylistError for something that is not a media playlist, and
    UnsupportedPlaylist for encrypted (EXT-X-KEY) segments: the store keeps
    files that play on their own, and keys expire.
    EXT-X-MAP (fMP4) gives each segment after it its init section, with its
    BYTERANGE if any; EXT-X-BYTERANGE gives a segment's sub-range, an omitted
    offset meaning "right after the previous sub-range of the same URI"
    (RFC 8216 §4.3.2.2), which is resolved here. A BYTERANGE that cannot be
    resolved (no offset, and no previous range of that URI) is a PlaylistError.
    Segments before the first EXT-X-PROGRAM-DATE-TIME get times counted back
    from it; later ones without their own carry the last one forward (m3u8's
    `current_program_date_time`).
    """
    playlist = load(text, url)
    if playlist.is_variant:
        raise PlaylistError(f"{url}: a master playlist where a media playlist was expected")
    if playlist.target_duration is None and not playlist.segments:
        raise PlaylistError(f"{url}: no EXT-X-TARGETDURATION and no segments")
    for segment in playlist.segments:
        key = segment.key
        if key is not None and key.method and key.method.upper() != "NONE":
            raise UnsupportedPlaylist(f"{url}: encrypted segments (EXT-X-KEY {key.method})")
    byteranges = _segment_byteranges(playlist, url)
    inits = [_init_section(s.init_section, url) for s in playlist.segments]
    pdts = [s.current_program_date_time for s in playlist.segments]
    durations = [micros(s.duration) for s in playlist.segments]
    has_pdt = any(p is not None for p in pdts)
    if has_pdt:
        first = next(i for i, p in enumerate(pdts) if p is not None)
        for i in range(first - 1, -1, -1):
            pdts[i] = pdts[i + 1] - durations[i]
        pdts = [p.astimezone(datetime.UTC) for p in pdts]
    ranges = _ad_ranges(playlist)
    segments = []
    for i, segment in enumerate(playlist.segments):
        segments.append(
            Segment(
                uri=segment.absolute_uri,
                sequence=(playlist.media_sequence or 0) + i,
                duration=durations[i],
                pdt=pdts[i],
                title=segment.title or "",
                ad=_ad_reason(segment, pdts[i], durations[i], ranges),
                discontinuity=bool(segment.discontinuity),
                byterange=byteranges[i],
                init=inits[i],
            )
        )
    return MediaPlaylist(
        segments=segments,
        target_duration=float(playlist.target_duration or 0)
        or max((s.duration for s in playlist.segments), default=2.0),
        ended=bool(playlist.is_endlist),
        has_pdt=has_pdt,
    )


def _parse_byterange(text, url):
    """`length[@offset]` → (length, offset or None); PlaylistError if malformed."""
    length, _, offset = str(text).strip().partition("@")
    if not length.isdigit() or (offset and not offset.isdigit()) or int(length) == 0:
        raise PlaylistError(f"{url}: bad byte range {text!r}")
    return int(length), int(offset) if offset else None


def _segment_byteranges(playlist, url):
    """Each segment's EXT-X-BYTERANGE as a ByteRange (None for whole resources)."""
    result = []
    ends = {}  # absolute uri -> where its previous sub-range ended
    for segment in playlist.segments:
        if not segment.byterange:
            result.append(None)
            continue
        length, offset = _parse_byterange(segment.byterange, url)
        if offset is None:
            if segment.absolute_uri not in ends:
                raise PlaylistError(f"{url}: EXT-X-BYTERANGE without an offset and nothing before")
            offset = ends[segment.absolute_uri]
        ends[segment.absolute_uri] = offset + length
        result.append(ByteRange(length, offset))
    return result


def _init_section(section, url):
    """m3u8's init section (EXT-X-MAP) → InitSection, or None."""
    if section is None or not section.uri:
        return None
    byterange = None
    if section.byterange:
        length, offset = _parse_byterange(section.byterange, url)
        byterange = ByteRange(length, offset or 0)  # EXT-X-MAP's offset defaults to 0
    return InitSection(urllib.parse.urljoin(section.base_uri or url, section.uri), byterange)


# --- placing segments in time ----------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A segment seen for the first time, with the start and duration it is stored under."""

    segment: Segment
    start: datetime.datetime
    duration: datetime.timedelta
    estimated: bool  # the playlist had no program date time: start guessed from arrival

    @property
    def end(self):
        return self.start + self.duration


class Timeline:
    """Decides each new segment's stored start and duration, for one channel and quality.

    Shared by every worker of that quality, so that a replacement worker (same
    stream, fresh URL) neither fetches again what the old one did nor files it
    under other times. `place(playlist, now)` returns only segments never seen
    before; repeated or backwards playlists therefore cost nothing.

    How times are chosen (the store's contract is "start from PDT"):
    - start = the segment's EXT-X-PROGRAM-DATE-TIME, except that when it lies
      within JOIN_TOLERANCE of where the previous segment was filed to end, it
      is taken to be exactly that end. PDT is rounded to the millisecond and
      EXTINF is not always exact, so without this a steady stream's neighbours
      would be a millisecond apart or overlapping, and readers would see holes.
    - end = the segment's own PDT plus its EXTINF (not the snapped start plus
      EXTINF), so rounding never accumulates: a stored start is never more than
      JOIN_TOLERANCE from its PDT, and two nodes that began recording at
      different segments agree on every name from their second segment on.
    - With no PDT in the playlist at all, the last segment is taken to end at
      arrival (`now`) and the others are counted back by EXTINF; later segments
      continue from the previous one by media sequence. The caller warns.
    """

    def __init__(self, memory=TIMELINE_MEMORY):
        self.memory = memory
        self._placed = collections.OrderedDict()  # key -> Placed

    @staticmethod
    def _key(segment):
        if segment.pdt is not None:
            return ("pdt", segment.pdt)
        return ("seq", segment.sequence)

    def _remember(self, key, placed):
        self._placed[key] = placed
        while len(self._placed) > self.memory:
            self._placed.popitem(last=False)

    def place(self, playlist, now):
        new = []
        previous = None  # the Placed of the previous segment in this playlist
        estimate_from = None
        for index, segment in enumerate(playlist.segments):
            key = self._key(segment)
            known = self._placed.get(key)
            if known is not None:
                previous = known
                continue
            if segment.pdt is not None:
                start, estimated = segment.pdt, False
                if previous is not None and abs(start - previous.end) <= JOIN_TOLERANCE:
                    start = previous.end
                end = segment.pdt + segment.duration
                if end <= start:
                    end = start + segment.duration
            else:
                estimated = True
                before = previous or self._placed.get(("seq", segment.sequence - 1))
                if before is not None and before.estimated:
                    start = before.end
                else:
                    if estimate_from is None:
                        remaining = sum(
                            (s.duration for s in playlist.segments[index:]), datetime.timedelta()
                        )
                        estimate_from = now - remaining
                    start = estimate_from
                end = start + segment.duration
            placed = Placed(segment, start, end - start, estimated)
            self._remember(key, placed)
            new.append(placed)
            previous = placed
        return new
