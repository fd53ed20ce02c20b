"""Shared code for the streamvault services.

Kept light: heavy dependencies stay behind their own modules
(`common.flask_stats` needs flask, `common.database` needs psycopg2), so a
service imports only what it uses.
"""

from .segments import (
    SegmentInfo,
    SegmentWriter,
    atomic_write,
    get_best_segments,
    jitter,
    parse_segment_path,
    segment_path,
)

__all__ = [
    "SegmentInfo",
    "SegmentWriter",
    "atomic_write",
    "get_best_segments",
    "jitter",
    "parse_segment_path",
    "segment_path",
]
