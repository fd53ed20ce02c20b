"""run-local's parts that need no running node: the summary's holes, --help."""

import datetime
import os
import shutil
import subprocess

import pytest

from common.segments import SegmentWriter
from tools.run_local.report import covered_spans, describe_holes

from .conftest import ROOT

UTC = datetime.UTC
T0 = datetime.datetime(2026, 12, 2, 13, 59, 50, tzinfo=UTC)


def write(base, offset, seconds, type="full"):
    start = T0 + datetime.timedelta(seconds=offset)
    with SegmentWriter(base, "test", "source", start, datetime.timedelta(seconds=seconds)) as w:
        w.write(b"x" * 188)
        return w.finish(type)


def test_the_summary_shows_each_hole_and_the_longest(tmp_path):
    base = str(tmp_path)
    for offset in (0, 2, 4):  # 13:59:50-13:59:56, into the next hour...
        write(base, offset, 2)
    for offset in (10, 12, 14, 16):  # ...a 4 s hole, then 14:00:00-14:00:08
        write(base, offset, 2)
    write(base, 19.5, 2)  # a 1.5 s hole
    quality_dir = os.path.join(base, "test", "source")
    spans = covered_spans(quality_dir, T0, T0 + datetime.timedelta(seconds=21.5))
    at = lambda s: T0 + datetime.timedelta(seconds=s)  # noqa: E731
    assert spans == [(at(0), at(6)), (at(10), at(18)), (at(19.5), at(21.5))]
    assert describe_holes(spans) == "2 holes, longest 4.0 s"
    assert describe_holes(spans[:1]) == "no holes"
    assert describe_holes(spans[:2]) == "1 hole, longest 4.0 s"


def test_a_partial_segment_ends_a_span(tmp_path):
    base = str(tmp_path)
    write(base, 0, 2, type="partial")
    write(base, 2, 2)
    spans = covered_spans(
        os.path.join(base, "test", "source"), T0, T0 + datetime.timedelta(seconds=4)
    )
    assert len(spans) == 2
    assert describe_holes(spans) == "1 hole, longest 0.0 s"


@pytest.mark.skipif(not shutil.which("python3"), reason="no system python3")
def test_help_needs_none_of_the_installed_packages():
    # The system Python, isolated from the checkout's virtualenv: what ./run-local
    # --help runs before tools/setup has installed anything.
    result = subprocess.run(
        ["python3", "-I", "-c", "import runpy, sys; sys.path.insert(0, '.'); "
         "sys.argv = ['run-local', '--help']; runpy.run_module('tools.run_local', "
         "run_name='__main__')"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: run-local")
    assert "--data-dir" in result.stdout


def test_run_local_help_prints_help_and_starts_nothing(tmp_path):
    result = subprocess.run(
        [str(ROOT / "run-local"), "--data-dir", str(tmp_path / "data"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: run-local")
    assert "setup:" not in result.stdout + result.stderr
    assert not os.path.exists(tmp_path / "data")


def test_test_stream_names_a_container_and_codec_the_stream_accepts(tmp_path):
    from devtools.teststream import TestStream
    from tools.run_local.cli import TEST_STREAM_FORMATS, parse_args

    assert parse_args([]).test_stream == "ts-h264"
    assert parse_args(["--test-stream", "fmp4-av1"]).test_stream == "fmp4-av1"
    for container, codec in TEST_STREAM_FORMATS.values():
        stream = TestStream(str(tmp_path), container=container, codec=codec)
        assert (stream.container, stream.codec) == (container, codec)
