"""fMP4 and byte-range playlists: what the downloader stores from them.

The origin serves real fMP4 from ffmpeg's HLS muxer (an init section and 2 s
media segments, H.264 and HEVC), behind EXT-X-MAP, with and without byte ranges.
A stored fMP4 segment must be the init section followed by the media bytes,
hashed together, named `.mp4`, and decodable on its own.
"""

import subprocess

import pytest

from common.segments import hash_bytes
from downloader.main import QualityWorker
from downloader.playlist import Timeline
from tests.downloader.conftest import errors, make_manager, segments_in, stored


@pytest.fixture
def rig(origin, metrics, tmp_path, fast):
    """A channel `ch` (one quality) and a worker on it, stepped by `poll`."""
    stream = origin.add_channel("ch")["source"]
    stream.window = 10
    manager = make_manager(origin, metrics, tmp_path)
    worker = QualityWorker(manager, "source", origin.media_url("ch", "source"), Timeline())

    def poll():
        worker.handle(worker.fetch())
        manager.getters.join(timeout=20)
        assert not manager.getters
        assert stored(tmp_path, include_temp=True) == stored(tmp_path)
        return segments_in(tmp_path)

    return stream, poll


def read(path):
    with open(path, "rb") as f:
        return f.read()


def decodes(path):
    """ffprobe reads the file's video and finds frames: it plays on its own."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    codec, frames = result.stdout.strip().split(",")
    assert not result.stderr, result.stderr
    return codec, int(frames)


def publish_fmp4(stream, parts, name):
    init, media = parts
    stream.set_init(name, init)
    for data in media:
        stream.publish(1, data=data)


def test_fmp4_is_stored_behind_its_init_section_fetched_once(rig, origin, fmp4_parts):
    stream, poll = rig
    publish_fmp4(stream, fmp4_parts("h264"), "init-0.mp4")
    segments = poll()
    init, media = fmp4_parts("h264")
    assert [s.type for s in segments] == ["full"] * 3
    for segment, data in zip(segments, media, strict=True):
        assert segment.path.endswith(".mp4") and segment.container == "mp4"
        assert read(segment.path) == init + data
        assert segment.hash == hash_bytes(init + data)
        assert decodes(segment.path) == ("h264", 60)
    assert origin.requests_for("/ch/source/init-0.mp4") == [200]


def test_a_new_map_mid_stream_is_used_from_its_segment_on(rig, origin, fmp4_parts):
    stream, poll = rig
    publish_fmp4(stream, fmp4_parts("h264"), "init-0.mp4")
    poll()
    publish_fmp4(stream, fmp4_parts("hevc"), "init-1.mp4")
    segments = poll()
    assert [decodes(s.path)[0] for s in segments] == ["h264"] * 3 + ["hevc"] * 3
    hevc_init, hevc_media = fmp4_parts("hevc")
    assert read(segments[3].path) == hevc_init + hevc_media[0]
    assert origin.requests_for("/ch/source/init-0.mp4") == [200]
    assert origin.requests_for("/ch/source/init-1.mp4") == [200]


def test_an_init_section_rewritten_in_place_is_fetched_again_after_a_discontinuity(
    rig, origin, fmp4_parts
):
    stream, poll = rig
    publish_fmp4(stream, fmp4_parts("h264"), "init.mp4")
    poll()
    # The encoder restarts as HEVC, writing the same names again.
    hevc_init, hevc_media = fmp4_parts("hevc")
    stream.set_init("init.mp4", hevc_init)
    stream.publish(1, data=hevc_media[0], tags=["#EXT-X-DISCONTINUITY"])
    stream.publish(1, data=hevc_media[1])
    segments = poll()
    assert [decodes(s.path)[0] for s in segments] == ["h264"] * 3 + ["hevc"] * 2
    assert origin.requests_for("/ch/source/init.mp4") == [200, 200]


def test_an_init_section_that_fails_is_retried(rig, origin, fmp4_parts):
    stream, poll = rig
    stream.init_faults = [("status", 503), ("reset", 100), ("truncate", 50)]
    publish_fmp4(stream, fmp4_parts("h264"), "init-0.mp4")
    segments = poll()
    init, media = fmp4_parts("h264")
    assert [read(s.path) for s in segments] == [init + data for data in media]
    assert origin.requests_for("/ch/source/init-0.mp4") == [503, "reset", "truncate", 200]


def test_no_init_section_means_nothing_stored(rig, origin, metrics, fmp4_parts, give_up_soon):
    stream, poll = rig
    stream.init_faults = [("status", 404)] * 100_000
    publish_fmp4(stream, fmp4_parts("h264"), "init-0.mp4")
    assert poll() == []
    assert errors(metrics, "init_section") >= 3  # each segment's getter said so
    assert errors(metrics, "segment_gone") >= 1  # the init attempts' own failures
    assert not any(p.endswith(".mp4") and "init" not in p for p, _ in origin.log)
    # Once the init section is served again, later segments are stored whole.
    stream.init_faults = []
    stream.publish(1, data=fmp4_parts("h264")[1][0])
    assert [s.type for s in poll()] == ["full"]


@pytest.mark.parametrize("kind", ["ts", "fmp4"])
def test_byte_range_segments(rig, origin, fmp4_parts, segment_data, kind):
    stream, poll = rig
    stream.byteranges = True
    if kind == "fmp4":
        init, media = fmp4_parts("hevc")
        publish_fmp4(stream, (init, media), "init-0.mp4")
        expected = [init + data for data in media]
    else:
        for data in segment_data[:3]:
            stream.publish(1, data=data)
        expected = segment_data[:3]
    segments = poll()
    assert [read(s.path) for s in segments] == expected
    assert all(s.type == "full" for s in segments)
    assert {s.container for s in segments} == {"mp4" if kind == "fmp4" else "ts"}
    assert set(origin.requests_for("/ch/source/all.")) == {206}
    if kind == "fmp4":
        assert decodes(segments[0].path)[0] == "hevc"
        assert len(origin.requests_for("/ch/source/all.")) == 4  # init once, then 3 segments
