"""Finding where a segment file's init section ends: real ffmpeg files and crafted boxes."""

import hashlib
import os
import struct

import pytest

from common.layout import MAX_INIT_SIZE, BadLayout, read_layout


def box(type, body=b""):
    return struct.pack(">I4s", 8 + len(body), type) + body


def big_box(type, body=b""):
    """A box with a 64-bit size, as writers use for huge mdat boxes."""
    return struct.pack(">I4sQ", 1, type, 16 + len(body)) + body


INIT = box(b"ftyp", b"iso6" * 3) + box(b"moov", box(b"mvhd", b"\0" * 100))
MEDIA = box(b"styp", b"msdh") + box(b"moof", b"\0" * 40) + box(b"mdat", b"frames" * 50)


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_real_fmp4_files(fmp4_media, codec):
    segments = fmp4_media(codec)
    layouts = [read_layout(path) for path, _ in segments]
    init_size = os.path.getsize(os.path.join(os.path.dirname(segments[0][0]), "init.mp4"))
    for (path, _), layout in zip(segments, layouts, strict=True):
        data = open(path, "rb").read()
        assert layout.init_size == init_size
        assert layout.size == len(data)
        assert data[layout.init_size + 4 : layout.init_size + 8] in (b"styp", b"moof")
    # One encoder session: every file carries the same init section.
    assert len({layout.init_hash for layout in layouts}) == 1


def test_ts_files(media):
    path, _ = media[0]
    layout = read_layout(path, "ts")
    data = open(path, "rb").read()
    # ffmpeg starts a segment with SDT, PAT and PMT: three packets, then media.
    assert layout.init_size == 3 * 188
    assert layout.size == len(data)


@pytest.mark.parametrize(
    "data, init_size",
    [
        (INIT + MEDIA, len(INIT)),
        (INIT + box(b"free", b"\0" * 10) + MEDIA, len(INIT) + 18),
        (INIT + box(b"moof", b"\0" * 40) + box(b"mdat", b"x"), len(INIT)),
        (INIT + box(b"sidx", b"\0" * 20) + MEDIA, len(INIT)),
        (box(b"ftyp", b"iso6") + big_box(b"moov", b"\0" * 30) + MEDIA, 12 + 46),
        # A partial download: the media part is cut short, the init is whole.
        (INIT + MEDIA[:-100], len(INIT)),
    ],
)
def test_crafted_layouts(tmp_path, data, init_size):
    path = tmp_path / "seg.mp4"
    path.write_bytes(data)
    layout = read_layout(str(path))
    assert (layout.init_size, layout.size) == (init_size, len(data))
    assert layout.media_size == len(data) - init_size
    assert layout.init_hash == hashlib.sha256(data[:init_size]).hexdigest()


def test_init_hash_tells_init_sections_apart(tmp_path):
    other = box(b"ftyp", b"iso6" * 3) + box(b"moov", box(b"mvhd", b"\1" * 100))
    layouts = []
    for i, init in enumerate((INIT, INIT, other)):
        path = tmp_path / f"{i}.mp4"
        path.write_bytes(init + MEDIA + bytes([i]) * 8)
        layouts.append(read_layout(str(path)))
    assert layouts[0].init_hash == layouts[1].init_hash != layouts[2].init_hash


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "no media"),
        (INIT, "no media"),
        (INIT[:-10], "runs past the end"),
        (MEDIA, "no moov"),
        (box(b"ftyp", b"iso6") + MEDIA, "no moov"),
        (struct.pack(">I4s", 4, b"ftyp") + MEDIA, "runs past the end"),
        (INIT + b"\0\0\0", "no media"),
        (box(b"ftyp") + box(b"moov") + box(b"free", b"\0" * MAX_INIT_SIZE) + MEDIA, "within"),
        (b"<html>not video</html>" * 10, "runs past the end"),
    ],
)
def test_not_fmp4(tmp_path, data, reason):
    path = tmp_path / "seg.mp4"
    path.write_bytes(data)
    with pytest.raises(BadLayout, match=reason):
        read_layout(str(path))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x47" + b"\0" * 187, b"garbage" * 100, b"\x47\x00\x00\x10" + b"\xff" * 184],
)
def test_not_ts(tmp_path, data):
    path = tmp_path / "seg.ts"
    path.write_bytes(data)
    with pytest.raises(BadLayout, match="PAT and a PMT"):
        read_layout(str(path), "ts")


def test_missing_file(tmp_path):
    with pytest.raises(OSError):
        read_layout(str(tmp_path / "gone.mp4"))
