"""What run-local tells the user: the banner once it runs, the summary when it stops."""

import datetime
import os
import sys
import urllib.parse

import requests

from common.segments import get_best_segments, list_segments

from .children import file_size, listdir, say
from .nodes import UPLOAD_LOCATION


def recorded(store):
    """Every segment in a store (any type but temp)."""
    segments = []
    for channel in listdir(store):
        for quality in listdir(os.path.join(store, channel)):
            quality_dir = os.path.join(store, channel, quality)
            for hour in listdir(quality_dir):
                segments += list_segments(os.path.join(quality_dir, hour))
    return segments


def covered_spans(quality_dir, first, last):
    """[(start, end)] of the recording in `quality_dir` between `first` and `last`.

    Made of the best segments as playlists and cuts see them (the store's own
    rule for what joins and what is a hole), so the holes between spans are
    the ones a cut of that range would refuse.
    """
    spans = []
    for segment in get_best_segments(quality_dir, first, last):
        if segment is None:
            spans.append(None)
        elif spans and spans[-1] is not None:
            spans[-1] = (spans[-1][0], segment.end)
        else:
            spans.append((segment.start, segment.end))
    return [span for span in spans if span is not None]


def describe_holes(spans):
    """'no holes', or how many holes lie between `spans` and how long the longest is."""
    gaps = [(b[0] - a[1]).total_seconds() for a, b in zip(spans, spans[1:], strict=False)]
    if not gaps:
        return "no holes"
    return f"{len(gaps)} hole{'s' if len(gaps) > 1 else ''}, longest {max(gaps):.1f} s"


def editor_exists(node):
    """True when the node's restreamer serves the editor page."""
    try:
        return requests.get(node.url + "/editor", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def banner(run):
    """Print where to watch, edit, cut and submit, once `run` is recording."""
    node = run.nodes[0]
    channel = run.channels[0][0]
    quality = run.qualities[0]
    # The first whole second recorded, so the example cut has no hole at its start.
    first = run.first_segment_start
    start = first.replace(microsecond=0) + datetime.timedelta(seconds=1 if first.microsecond else 0)
    end = start + datetime.timedelta(seconds=10)
    fmt = "%Y-%m-%dT%H:%M:%S"
    query = f"start={start.strftime(fmt)}&end={end.strftime(fmt)}"
    names = [name for name, _ in run.channels]
    if run.test_stream:
        what = f'the built-in test stream (channel "{channel}")'
    else:
        what = ("channel " if len(names) == 1 else "channels ") + ", ".join(names)
    job = (
        f'{{"channel": "{channel}", "quality": "{quality}", '
        f'"start": "{start.strftime(fmt)}", "end": "{end.strftime(fmt)}", '
        f'"title": "My first clip", "upload_location": "{UPLOAD_LOCATION}"}}'
    )
    count = len(run.nodes)
    lines = [
        "",
        f"streamvault is running: {count} node{'s' if count > 1 else ''} "
        f"recording {what} in {' and '.join(run.qualities)}.",
        "",
        f"  Watch     ffplay {node.url}/playlist/{channel}.m3u8     (or mpv, VLC)",
    ]
    if editor_exists(node):
        # The page is on the restreamer's port; its cutter API is on another.
        editor = f"{node.url}/editor?{urllib.parse.urlencode({'api': node.url_for('cutter')})}"
        lines.append(f"  Edit      {editor}     (in a browser: mark a range, cut it)")
        lines.append(f"            sign in with the editor token {run.editor_token}")
    lines += [
        f"  Cut       curl -o clip.ts '{node.url}/cut/{channel}/{quality}.ts?{query}'",
        "            (10 s from the start of the recording; once that much is recorded)",
        f"  Submit    curl -X POST {node.url_for('cutter')}/jobs "
        f"-H 'Content-Type: application/json' \\",
        f"              -H 'Authorization: Bearer {run.editor_token}' \\",
        f"              -d '{job}'",
        f"            then: curl {node.url_for('cutter')}/jobs   (videos land in {node.uploads},",
        f"            served at {node.url_for('uploads')}/)",
        "  Metrics   " + "  ".join(f"{s} {node.url_for(s)}/metrics" for s in node.services()),
    ]
    if node.backdoor:
        client = f"{os.path.relpath(sys.executable)} -m common.backdoor"
        lines.append("  Backdoor  a Python shell inside each service (Unix sockets, mode 0600):")
        lines += [f"              {client} {node.backdoor_socket(s)}" for s in node.services()]
    else:
        lines.append("  Backdoor  off (--backdoor opens a Python shell inside each service)")
    for other in run.nodes[1:]:
        lines.append(
            f"  {other.name}     {other.url} (restreamer), {other.url_for('cutter')} (jobs);\n"
            f"            it starts recording {run.second_node_delay} s late, like a node "
            f"joining an event late:\n            what it missed is backfilled from {node.name}"
        )
    lines += [
        f"  Data      {run.data_dir}   (logs in {run.logs})",
        f"  Jobs DB   {run.database.description}",
        "",
        "Ctrl-C stops everything and says what was recorded.",
        "",
    ]
    say("\n".join(lines))


def summary(run):
    """Print what each node recorded, what was backfilled and uploaded, and the jobs."""
    lines = ["", "What was recorded:"]
    for node in run.nodes:
        by_key = {}
        for segment in recorded(node.store):
            by_key.setdefault((segment.channel, segment.quality), []).append(segment)
        if not by_key:
            lines.append(f"  {node.name}: nothing ({node.store})")
        for (channel, quality), group in sorted(by_key.items()):
            full = [s for s in group if s.type == "full"]
            other = len(group) - len(full)
            size = sum(file_size(s.path) for s in group)
            first = min(s.start for s in group)
            last = max(s.end for s in group)
            spans = covered_spans(os.path.join(node.store, channel, quality), first, last)
            lines.append(
                f"  {node.name} {channel}/{quality}: {len(full)} segments"
                + (f" (+{other} partial or suspect)" if other else "")
                + f", {first:%H:%M:%S}–{last:%H:%M:%S} UTC, {describe_holes(spans)}, "
                f"{size / 1e6:.1f} MB"
            )
        if run.backfilled.get(node.name):
            lines.append(
                f"  {node.name}: {run.backfilled[node.name]} of these segments backfilled "
                "from peers"
            )
        uploads = [n for n in listdir(node.uploads) if not n.startswith(".")]
        if uploads:
            lines.append(f"  {node.name} uploads: {len(uploads)} videos in {node.uploads}")
    counts = run.database.job_counts() if run.database.dsn else None
    if counts:
        jobs = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        lines.append(f"  cut jobs: {jobs}")
    lines.append(f"  store: {run.data_dir}")
    say("\n".join(lines))
