"""Shared code for the streamvault services.

Kept light: heavy dependencies stay behind their own modules
(`common.flask_stats` needs flask, `common.database` needs psycopg2), so a
service imports only what it uses.
"""

from .backoff import jitter
from .segments import (
    SegmentInfo,
    SegmentWriter,
    atomic_write,
    get_best_segments,
    parse_segment_path,
    segment_path,
)

__all__ = [
    "jitter",
    "SegmentInfo",
    "SegmentWriter",
    "atomic_write",
    "get_best_segments",
    "parse_segment_path",
    "segment_path",
]
