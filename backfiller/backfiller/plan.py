"""Deciding what to backfill, and reading the node file: pure functions, no I/O.

The worker in `main.py` lists a peer's hours and segments and asks
`hours_to_backfill` and `segments_to_fetch` what to do with them; the manager
reads the node file's text and hands it to `parse_node_lines`. Nothing here
touches the network or the disk, so every rule is tested with plain values.
"""

import urllib.parse
from typing import NamedTuple

from common.segments import TYPE_RANK, format_hour, validate_name_part


class Peer(NamedTuple):
    """A peer node: a short name (for logs and metric labels) and its restreamer's URL."""

    name: str
    url: str


# --- which hours, which segments -----------------------------------------


def hours_to_backfill(hour_lists, start=None):
    """The hours to visit: the union of `hour_lists`, newest first, from `start`'s hour on.

    `hour_lists` holds one iterable of validated hour names per quality. The
    result is a new list; the caller's lists are neither sorted nor changed.
    Hour names are fixed-width, so sorting them as text sorts them in time.
    """
    hours = set()
    for hour_list in hour_lists:
        hours.update(hour_list)
    if start is not None:
        first = format_hour(start)
        hours = {hour for hour in hours if hour >= first}
    return sorted(hours, reverse=True)


def _rank(segment):
    """How good a copy is, comparable across nodes by name alone (no file sizes)."""
    return (TYPE_RANK[segment.type], segment.duration, segment.hash)


def segments_to_fetch(remote, local, now, recent_cutoff):
    """Which of a peer's segments for one hour this node should fetch, in the given order.

    `remote` and `local` are SegmentInfos of one channel, quality and hour.
    - a name already here, or a `temp`: never;
    - starting less than `recent_cutoff` (a timedelta) before `now`: left to the
      local downloader, which is probably still fetching it;
    - any copy of a start this node holds a `full` copy of: never. What a
      node recorded whole itself is what it serves; a peer cannot put another
      body beside it (a padded or different copy that would win the store's
      size tie-break);
    - otherwise only the best copy for its start time of all those here and
      on the peer (by type, duration, then hash): one copy per start, the same
      one on every node that asks the same peer. So a node with a full copy
      never fetches a broken one, and two nodes holding different broken
      copies converge on the same best one instead of trading copies forever.
    """
    have = {segment.name for segment in local}
    have_full = {segment.start for segment in local if segment.type == "full"}
    best = {}
    for segment in [*local, *remote]:
        if segment.type == "temp":
            continue
        if segment.start not in best or _rank(segment) > _rank(best[segment.start]):
            best[segment.start] = segment
    newest_start = now - recent_cutoff
    wanted = []
    seen = set()
    for segment in remote:
        if segment.type == "temp" or segment.name in have or segment.name in seen:
            continue
        if segment.start > newest_start or segment.start in have_full:
            continue
        if best[segment.start].name != segment.name:
            continue  # a better copy here or on the peer
        seen.add(segment.name)
        wanted.append(segment)
    return wanted


# --- the node list ----------------------------------------------------------


def normalize_url(url):
    """`http://host:port/prefix/` → `http://host:port/prefix`; ValueError if not http(s)."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"bad node URL {url!r}: expected http://host[:port]")
    return urllib.parse.urlunsplit(
        (parsed.scheme, parsed.netloc.lower(), parsed.path.rstrip("/"), "", "")
    )


def peer_from_url(url):
    """A Peer named by its URL's host:port (for `--nodes` and name-less node-file lines)."""
    url = normalize_url(url)
    return Peer(urllib.parse.urlsplit(url).netloc, url)


def parse_node_lines(text):
    """Parse a node file: lines `NAME URL` or `URL`; `#` starts a comment.

    Returns `(peers, errors)`: a bad line is reported in `errors` (one line
    each, naming the line) and skipped, so one typo does not drop every peer.
    """
    peers, errors = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            if len(fields) == 1:
                peers.append(peer_from_url(fields[0]))
            elif len(fields) == 2:
                name = validate_name_part(fields[0], "node name")
                peers.append(Peer(name, normalize_url(fields[1])))
            else:
                raise ValueError("expected 'NAME URL' or 'URL'")
        except ValueError as e:
            errors.append(f"line {number}: {e}")
    return peers, errors
