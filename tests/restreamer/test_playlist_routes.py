"""Playlist routes over a real store, compared as whole texts.

The store (see conftest) holds `chan/source` as 2 s segments from 13:59:50 to
14:00:10, across an hour boundary, and one `chan/480p` segment at 14:00:00.
"""

import datetime
import os
import urllib.parse

import pytest

from restreamer.app import SETTLE_TIME, create_app

from .conftest import at, write_segment

HEAD = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n"
VOD = HEAD + "#EXT-X-PLAYLIST-TYPE:VOD\n"
EVENT = HEAD + "#EXT-X-PLAYLIST-TYPE:EVENT\n"
ENDLIST = "#EXT-X-ENDLIST\n"
DISCONTINUITY = "#EXT-X-DISCONTINUITY\n"


def entries(store_dir, *starts, quality="source"):
    """The playlist lines for the segments at `starts` (datetimes), read from the store."""
    text = ""
    for start in starts:
        hour = start.strftime("%Y-%m-%dT%H")
        prefix = start.strftime("%M:%S.%f")
        directory = os.path.join(store_dir, "chan", quality, hour)
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and "-temp-" not in n]
        # Where a start has several copies, the full one is the best.
        (name,) = [n for n in names if "-full-" in n] if len(names) > 1 else names
        duration = name.split("-")[1]
        text += (
            f"#EXT-X-PROGRAM-DATE-TIME:{start.isoformat(timespec='milliseconds')[:-6]}Z\n"
            f"#EXTINF:{duration},\n"
            f"../../segments/chan/{quality}/{hour}/{name.replace(':', '%3A')}\n"
        )
    return text


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, response.data
    if status == 200:
        assert response.content_type == "application/vnd.apple.mpegurl"
    return response.get_data(as_text=True)


def test_finished_range_across_an_hour(client, store_dir):
    text = get(
        client, "/playlist/chan/source.m3u8?start=2026-11-28T13:59:55&end=2026-11-28T14:00:03"
    )
    expected = entries(
        store_dir, at(13, 59, 54), at(13, 59, 56), at(13, 59, 58), at(14, 0, 0), at(14, 0, 2)
    )
    assert text == VOD.format(target=2) + expected + ENDLIST


def test_holes_and_partials(client, store_dir):
    write_segment(store_dir, "chan", "source", at(14, 0, 10), 2, type="partial")
    # A better copy of the same start wins over the partial one.
    write_segment(store_dir, "chan", "source", at(14, 0, 12), 2, type="partial")
    write_segment(store_dir, "chan", "source", at(14, 0, 12), 2, b"complete", type="full")
    # A longer segment after a gap.
    write_segment(store_dir, "chan", "source", at(14, 0, 20), 6.006)
    write_segment(store_dir, "chan", "source", at(14, 0, 20), 6.006, type="temp")
    text = get(
        client, "/playlist/chan/source.m3u8?start=2026-11-28T14:00:06Z&end=2026-11-28T14:00:26"
    )
    assert text == (
        VOD.format(target=6)
        + entries(store_dir, at(14, 0, 6), at(14, 0, 8), at(14, 0, 10))
        + DISCONTINUITY
        + entries(store_dir, at(14, 0, 12))
        + DISCONTINUITY
        + entries(store_dir, at(14, 0, 20))
        + ENDLIST
    )


def test_live_ranges(client, store_dir):
    expected = EVENT.format(target=2) + entries(store_dir, at(14, 0, 6), at(14, 0, 8))
    # No end: live, however long ago the recording stopped (it may resume).
    assert get(client, "/playlist/chan/source.m3u8?start=2026-11-28T14:00:06") == expected
    # An end in the future: live too.
    assert (
        get(client, "/playlist/chan/source.m3u8?start=2026-11-28T14:00:06&end=2026-11-28T19:00")
        == expected
    )


@pytest.mark.parametrize(
    "now_after_end, last_arrived, ended",
    [
        (datetime.timedelta(seconds=1), True, True),
        (datetime.timedelta(seconds=1), False, False),
        (SETTLE_TIME - datetime.timedelta(seconds=1), False, False),
        (SETTLE_TIME, False, True),
        (-datetime.timedelta(seconds=1), True, False),
    ],
)
def test_range_ends_when_its_last_segment_arrives(store_dir, now_after_end, last_arrived, ended):
    end = at(14, 0, 12) if last_arrived is False else at(14, 0, 10)
    app = create_app(store_dir, now=lambda: end + now_after_end)
    url = f"/playlist/chan/source.m3u8?start=2026-11-28T14:00:06&end={end.isoformat()[:19]}"
    text = get(app.test_client(), url)
    body = entries(store_dir, at(14, 0, 6), at(14, 0, 8))
    if ended:
        assert text == VOD.format(target=2) + body + ENDLIST
    else:
        assert text == EVENT.format(target=2) + body


def test_default_start_is_the_first_hour(client, store_dir):
    text = get(client, "/playlist/chan/480p.m3u8")
    assert text == EVENT.format(target=2) + entries(store_dir, at(14, 0, 0), quality="480p")


def test_empty_ranges(client, store_dir):
    body = get(
        client, "/playlist/chan/source.m3u8?start=2026-11-28T15:00&end=2026-11-28T16:00", 404
    )
    assert body == (
        "404 Not Found: nothing recorded for chan/source from"
        " 2026-11-28T15:00:00.000000Z to 2026-11-28T16:00:00.000000Z\n"
    )
    # Live and empty: the recording may start yet.
    assert get(client, "/playlist/chan/source.m3u8?start=2026-11-28T17:59") == EVENT.format(
        target=2
    )
    os.makedirs(os.path.join(store_dir, "chan", "1080p"))
    assert get(client, "/playlist/chan/1080p.m3u8") == EVENT.format(target=2)
    body = get(client, "/playlist/chan.m3u8?start=2026-11-28T15:00&end=2026-11-28T16:00", 404)
    assert body.startswith("404 Not Found: nothing recorded for chan from")
    assert get(client, "/playlist/nochan.m3u8", 404) == "404 Not Found: no channel nochan\n"
    assert get(client, "/playlist/chan/noq.m3u8", 404) == "404 Not Found: no quality chan/noq\n"


def bits_per_second(store_dir, quality, *starts):
    rates = []
    for start in starts:
        directory = os.path.join(store_dir, "chan", quality, start.strftime("%Y-%m-%dT%H"))
        (name,) = [n for n in os.listdir(directory) if n.startswith(start.strftime("%M:%S"))]
        rates.append(os.path.getsize(os.path.join(directory, name)) * 8 / 2)
    return round(max(rates)), round(sum(rates) / len(rates))


def test_master_playlist(client, store_dir, caplog):
    text = get(client, "/playlist/chan.m3u8?start=2026-11-28T13:59:59&end=2026-11-28T14:00:02")
    source = bits_per_second(store_dir, "source", at(13, 59, 58), at(14, 0, 0))
    p480 = bits_per_second(store_dir, "480p", at(14, 0, 0))
    query = "start=2026-11-28T13%3A59%3A59.000000Z&end=2026-11-28T14%3A00%3A02.000000Z"
    variants = sorted(
        [(source, f"chan/source.m3u8?{query}"), (p480, f"chan/480p.m3u8?{query}")], reverse=True
    )
    expected = "#EXTM3U\n#EXT-X-VERSION:3\n"
    for (peak, average), uri in variants:
        expected += f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average}\n{uri}\n"
    assert text == expected
    # The made-up segments are no video: ffprobe cannot tell, which is logged.
    assert "Could not probe" in caplog.text

    # Qualities without content in range are left out.
    text = get(client, "/playlist/chan.m3u8?start=2026-11-28T13:59:50&end=2026-11-28T13:59:54")
    assert text.count("#EXT-X-STREAM-INF") == 1 and "chan/source.m3u8?" in text


def test_master_playlist_default_start_is_pinned(client):
    text = get(client, "/playlist/chan.m3u8")
    # Every variant plays from the same start, the channel's first hour; live.
    assert text.count("?start=2026-11-28T13%3A00%3A00.000000Z\n") == 2
    assert "end=" not in text


def test_get_best_segments_is_timed(client):
    get(client, "/playlist/chan/source.m3u8?start=2026-11-28T13:59:55&end=2026-11-28T14:00:03")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'get_best_segments_latency_count{channel="chan",error="",quality="source"} 1.0' in metrics
    )
    assert (
        'get_best_segments_latency_normalized_count{channel="chan",error="",quality="source"} 1.0'
        in metrics
    )


def test_live_playlist_grows_at_its_end(client, store_dir):
    """A player reloading a live playlist finds what it had, then the new segments."""
    url = "/playlist/chan/source.m3u8?start=2026-11-28T14:00:04"
    before = get(client, url)
    write_segment(store_dir, "chan", "source", at(14, 0, 10), 2)
    write_segment(store_dir, "chan", "source", at(14, 0, 12), 2)
    after = get(client, url)
    assert after.startswith(before)
    assert after[len(before) :] == entries(store_dir, at(14, 0, 10), at(14, 0, 12))
    # A later segment after a gap comes with a discontinuity.
    write_segment(store_dir, "chan", "source", at(14, 0, 30), 2)
    later = get(client, url)
    assert later == after + DISCONTINUITY + entries(store_dir, at(14, 0, 30))


@pytest.mark.parametrize("channel", ["chan", "my channel", "caf\u00e9+tv", "100%"])
def test_playlist_uris_fetch_their_segments(tmp_path, channel):
    """Every URI in a master and media playlist, resolved as a player would, works."""
    store_dir = str(tmp_path / "store")
    data = {}
    for second in (0, 2, 6):
        path = write_segment(store_dir, channel, "source", at(14, 0, second), 2)
        with open(path, "rb") as f:
            data[second] = f.read()
    client = create_app(store_dir, now=lambda: at(18, 0, 0)).test_client()
    master_url = "/playlist/" + urllib.parse.quote(channel, safe="") + ".m3u8"
    master = get(client, master_url + "?start=2026-11-28T14:00&end=2026-11-28T14:00:08")
    (variant,) = [line for line in master.splitlines() if not line.startswith("#")]
    media_url = urllib.parse.urljoin(master_url, variant)
    media = get(client, media_url)
    assert media.count(DISCONTINUITY) == 1 and media.endswith(ENDLIST)
    uris = [line for line in media.splitlines() if not line.startswith("#")]
    assert len(uris) == 3
    for second, uri in zip((0, 2, 6), uris, strict=True):
        response = client.get(urllib.parse.urljoin(media_url, uri))
        assert response.status_code == 200, uri
        assert response.data == data[second]
        response.close()
