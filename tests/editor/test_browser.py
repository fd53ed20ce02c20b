"""The editor page in a real browser, against a real restreamer over a real store.

Chromium plays the restreamer's playlists through hls.js; the tests act as an
editor would (click, press keys, type) and read back what the page shows,
judging it against the playlist the restreamer serves and the cut it makes.
"""

import datetime
import os
import urllib.parse

import m3u8
import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import MEDIA_START
from tests.media import add_to_store

# A real Chromium drives the page: slow by the suite's rule (the fast subset has none).
pytestmark = pytest.mark.slow

CHANNEL = "desertbus"
QUALITY = "source"
FRAME = 1 / 30  # seconds: the test media's frame duration
# hls.js notes these while it works around the media's first timestamps; they
# are reported as non-fatal and do not interrupt playback.
BENIGN_HLS_ERRORS = {"bufferSeekOverHole"}


def format_time(dt):
    """As the page writes times: UTC, milliseconds, no zone."""
    return dt.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def seconds(n):
    return datetime.timedelta(seconds=n)


def editor_url(server, start, end=None, **params):
    query = {"channel": CHANNEL, "quality": QUALITY, "start": format_time(start)}
    if end is not None:
        query["end"] = format_time(end)
    query.update(params)
    return f"{server.url}/editor?{urllib.parse.urlencode(query)}"


def stock(media, *runs):
    """A store filler: `runs` are (offset seconds from MEDIA_START, segments)."""

    def fill(base):
        for offset, segments in runs or [(0, media)]:
            add_to_store(base, CHANNEL, QUALITY, MEDIA_START + seconds(offset), segments)

    return fill


def parse_shown_time(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def playlist_times(server, start, end):
    """[(media offset from the first frame, program date time)] of the restreamer's playlist."""
    query = urllib.parse.urlencode({"start": format_time(start), "end": format_time(end)})
    response = requests.get(f"{server.url}/playlist/{CHANNEL}/{QUALITY}.m3u8?{query}", timeout=10)
    response.raise_for_status()
    times, position = [], 0.0
    for segment in m3u8.loads(response.text).segments:
        times.append((position, segment.program_date_time))
        position += segment.duration
    return times


def expected_time(times, offset):
    """The broadcast time `offset` seconds after the window's first frame, by the playlist."""
    position, pdt = [(p, t) for p, t in times if p <= offset + 1e-6][-1]
    return pdt + seconds(offset - position)


STATE = """() => JSON.stringify({
    paused: video.paused, currentTime: video.currentTime, readyState: video.readyState,
    buffered: Array.from({length: video.buffered.length},
        (_, i) => [video.buffered.start(i), video.buffered.end(i)]),
    segments: editor.segments.length, errors: editor.errors, hlsErrors: editor.hlsErrors,
    autoplay: editor.autoplay,
    messages: Array.from(document.querySelectorAll("#messages .message"), (m) => m.textContent),
})"""


def wait_for(page, expression):
    """Wait until `expression` holds in the page; on timeout, fail saying what the page was at."""
    try:
        page.wait_for_function(expression)
    except PlaywrightTimeout:
        raise AssertionError(
            f"timed out waiting for {expression}: {page.evaluate(STATE)}"
        ) from None


def wait_loaded(page):
    wait_for(page, "editor.segments.length > 0 && editor.hls && video.readyState >= 2")


def wait_shown(page):
    """Wait until the page shows the time of the frame on screen; return both.

    The frame is the media time of the frame a paused player shows, as the
    page works it out (`playheadMedia`); the tests judge it by the pixels.
    """
    wait_for(
        page,
        "video.paused && !video.seeking && video.readyState >= 2"
        " && document.getElementById('broadcast-time').dataset.frame === String(playheadMedia())",
    )
    frame = page.evaluate("playheadMedia()")
    return frame, parse_shown_time(page.text_content("#broadcast-time"))


def hls_errors(page):
    errors = page.evaluate("editor.hlsErrors")
    return [e for e in errors if e["fatal"] or e["details"] not in BENIGN_HLS_ERRORS]


def close_to(a, b, tolerance=0.0015):
    return abs((a - b).total_seconds()) <= tolerance


def test_plays_and_shows_broadcast_time(page, restreamer, media):
    server = restreamer(stock(media))
    end = MEDIA_START + seconds(30)
    page.goto(editor_url(server, MEDIA_START, end))
    wait_loaded(page)
    assert page.input_value("#channel") == CHANNEL
    assert page.input_value("#quality") == QUALITY
    assert page.text_content("#holes") == "No holes in this window."
    times = playlist_times(server, MEDIA_START, end)

    # Loaded, paused on the first frame: the first segment's program date time.
    first, shown = wait_shown(page)
    assert shown == times[0][1]

    page.click("#play")
    wait_for(page, "video.currentTime > 1.5")
    page.click("#play")
    frame, shown = wait_shown(page)
    assert hls_errors(page) == []
    assert close_to(shown, expected_time(times, frame - first)), shown

    # In a later segment the mapping holds too (not only for the first one).
    page.evaluate(f"video.currentTime = {first + 13.5 + 0.001}")
    frame, shown = wait_shown(page)
    assert abs(frame - first - 13.5) < 0.001
    assert shown == expected_time(times, 13.5)

    # A click on the timeline seeks to the time under the pointer.
    box = page.locator("#timeline").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    _, shown = wait_shown(page)
    assert close_to(shown, MEDIA_START + seconds(22.5), tolerance=30 / box["width"] + FRAME)

    # "Play selection" plays the marked second and stops on its last frame.
    page.fill("#cut-start", format_time(MEDIA_START + seconds(20)))
    page.fill("#cut-end", format_time(MEDIA_START + seconds(21)))
    page.press("#cut-end", "Tab")
    page.click("#play-selection")
    wait_for(page, "!video.paused")
    _, shown = wait_shown(page)
    assert close_to(shown, MEDIA_START + seconds(21 - FRAME)), shown


def mark_with_keys(page, start_seconds, end_seconds):
    """From the paused first frame: arrows to each mark, [ and ] to set it."""
    page.locator("body").focus()
    for _ in range(start_seconds):
        page.keyboard.press("ArrowRight")
    wait_shown(page)
    page.keyboard.press("[")
    for _ in range(end_seconds - start_seconds):
        page.keyboard.press("ArrowRight")
    wait_shown(page)
    page.keyboard.press("]")


# Draws a video's current frame small and grey: enough to tell neighbouring
# frames of the test pattern apart (its clock and frame counter change every frame).
GRAB_FRAME = """(id) => {
    const v = document.getElementById(id);
    const c = document.createElement("canvas");
    c.width = 160;
    c.height = 90;
    const g = c.getContext("2d");
    g.drawImage(v, 0, 0, c.width, c.height);
    const rgba = g.getImageData(0, 0, c.width, c.height).data;
    const grey = [];
    for (let i = 0; i < rgba.length; i += 4) grey.push((rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3);
    return grey;
}"""


def frame_difference(a, b):
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def test_keys_mark_the_cut_and_preview_starts_on_the_marked_frame(page, restreamer, media):
    """What the editor sees at `[` is the first frame of the cut; the cut lasts to `]`."""
    server = restreamer(stock(media))
    end = MEDIA_START + seconds(30)
    page.goto(editor_url(server, MEDIA_START, end))
    wait_loaded(page)
    times = playlist_times(server, MEDIA_START, end)
    mark_with_keys(page, 2, 9)

    cut_start = parse_shown_time(page.input_value("#cut-start"))
    cut_end = parse_shown_time(page.input_value("#cut-end"))
    assert close_to(cut_start, expected_time(times, 2))
    assert close_to(cut_end, expected_time(times, 9))
    assert page.text_content("#cut-duration") == "7.000 s"
    assert page.text_content("#cut-holes") == "No holes in the selection."

    # The frames at the start mark and either side of it, stepping with the keys.
    page.click("#goto-start")
    marked_frame, _ = wait_shown(page)
    marked = page.evaluate(GRAB_FRAME, "video")
    page.keyboard.press("Shift+ArrowLeft")
    before_frame, _ = wait_shown(page)
    before = page.evaluate(GRAB_FRAME, "video")
    page.keyboard.press(".")
    page.keyboard.press(".")
    after_frame, _ = wait_shown(page)
    after = page.evaluate(GRAB_FRAME, "video")
    assert abs(marked_frame - before_frame - FRAME) < 0.001
    assert abs(after_frame - marked_frame - FRAME) < 0.001

    page.click("#preview")
    page.wait_for_selector("#preview-status.status-ok, #preview-status.status-error")
    status = page.locator("#preview-status")
    assert status.get_attribute("class") == "status-ok", status.text_content()
    duration = float(status.get_attribute("data-duration"))
    assert abs(duration - 7) < FRAME / 2
    wait_for(page, "document.getElementById('preview-video').readyState >= 2")
    first = page.evaluate(GRAB_FRAME, "preview-video")
    # The cut's first frame is the marked one (re-encoded: close, not identical),
    # and clearly not either neighbour.
    on_mark = frame_difference(first, marked)
    assert on_mark < frame_difference(first, before) / 2
    assert on_mark < frame_difference(first, after) / 2

    # The preview really plays.
    page.evaluate("document.getElementById('preview-video').play()")
    wait_for(page, "document.getElementById('preview-video').currentTime > 0.5")
    assert hls_errors(page) == []


def test_holes_are_shown_and_cuts_over_them_need_consent(page, restreamer, media):
    # Segments 0-18 s and 30-42 s: a 12 s hole from 18 s.
    server = restreamer(stock(media, (0, media[:3]), (30, media[3:])))
    page.goto(editor_url(server, MEDIA_START, MEDIA_START + seconds(42)))
    wait_loaded(page)
    assert page.text_content("#holes").startswith("1 hole in this window, 12.000 s missing: ")
    assert page.locator("#timeline .bar.hole").count() == 1

    page.fill("#cut-start", format_time(MEDIA_START + seconds(10)))
    page.fill("#cut-end", format_time(MEDIA_START + seconds(35)))
    page.press("#cut-end", "Tab")
    assert page.text_content("#cut-holes").startswith("1 hole in the selection, 12.000 s missing")

    page.fill("#title", "over the hole")
    page.click("#submit")
    assert "The selection has holes" in page.text_content("#submit-status")

    page.click("#preview")
    page.wait_for_selector("#preview-status.status-error")
    assert "406" in page.text_content("#preview-status")

    page.check("#allow-holes")
    page.click("#preview")
    page.wait_for_selector("#preview-status.status-ok")
    duration = float(page.get_attribute("#preview-status", "data-duration"))
    assert abs(duration - (25 - 12)) <= 2 * FRAME


def test_a_window_without_video_says_so_and_leads_to_the_latest(page, restreamer, media):
    server = restreamer(stock(media))
    page.goto(editor_url(server, MEDIA_START - seconds(7200), MEDIA_START - seconds(3600)))
    message = page.locator("#messages [data-key=empty]")
    message.wait_for()
    assert message.text_content().startswith(f"No video of {CHANNEL} ({QUALITY}) between ")
    assert "The latest recorded hour is 2026-11-28T14." in message.text_content()
    message.locator("button").click()
    wait_loaded(page)
    assert page.input_value("#window-start") == "2026-11-28T14:00:00.000"
    assert page.locator("#messages [data-key=empty]").count() == 0


def test_unreachable_cutter_api_is_said_in_words_on_a_narrow_screen(
    page, restreamer, media, closed_port
):
    server = restreamer(stock(media))
    page.set_viewport_size({"width": 360, "height": 780})
    api = f"http://127.0.0.1:{closed_port}"
    page.goto(editor_url(server, MEDIA_START, MEDIA_START + seconds(30), api=api))
    wait_loaded(page)
    status = page.locator("#jobs-status.status-error")
    status.wait_for()
    assert status.text_content().startswith(f"Cannot reach the cutter API at {api}")

    mark_with_keys(page, 1, 3)
    page.fill("#title", "nowhere to go")
    page.click("#submit")
    page.wait_for_selector("#submit-status.status-error")
    assert page.text_content("#submit-status").startswith(f"Cannot reach the cutter API at {api}")

    # Nothing runs off the side of a phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    if os.environ.get("EDITOR_NARROW_SCREENSHOT"):
        page.screenshot(path=os.environ["EDITOR_NARROW_SCREENSHOT"], full_page=True)


def test_a_live_window_follows_the_recording(page, restreamer, media, tmp_path):
    """With no end, the window follows live: new segments appear as they are stored."""
    server = restreamer(stock(media, (0, media[:4])))
    page.goto(editor_url(server, MEDIA_START))
    wait_for(page, "editor.hls?.levels?.[0]?.details?.live && editor.segments.length === 4")
    assert page.is_checked("#live")
    assert page.input_value("#window-end") == ""
    # Started at the live edge and playing, as a viewer expects.
    wait_for(page, "!video.paused && video.readyState >= 3")
    playing_from = page.evaluate("video.currentTime")
    assert playing_from >= 5.9  # near the live edge, not at the window's start
    wait_for(page, f"video.currentTime > {playing_from + 0.5}")

    add_to_store(str(tmp_path / "store"), CHANNEL, QUALITY, MEDIA_START + seconds(24), media[4:])
    wait_for(page, "editor.segments.length === 5")
    assert "30.000 s in 5 segments, following live" in page.text_content("#window-info")
    assert hls_errors(page) == []


@pytest.mark.slow
def test_preview_of_an_fmp4_range_is_an_mp4_cut(page, restreamer, fmp4_media):
    # H.264, which Chromium decodes: the cut plays in the page's own <video>.
    server = restreamer(stock(None, (0, fmp4_media("h264"))))
    page.goto(editor_url(server, MEDIA_START, MEDIA_START + seconds(6)))
    wait_loaded(page)
    cuts = []
    page.on(
        "request", lambda r: "/cut/" in r.url and cuts.append(urllib.parse.urlsplit(r.url).path)
    )
    page.fill("#cut-start", format_time(MEDIA_START + seconds(1)))
    page.fill("#cut-end", format_time(MEDIA_START + seconds(4.5)))
    page.press("#cut-end", "Tab")
    page.click("#preview")
    page.wait_for_selector("#preview-status.status-ok, #preview-status.status-error")
    status = page.locator("#preview-status")
    assert status.get_attribute("class") == "status-ok", status.text_content()
    assert cuts == [f"/cut/{CHANNEL}/{QUALITY}.mp4"]
    assert abs(float(status.get_attribute("data-duration")) - 3.5) < FRAME / 2
    assert page.get_attribute("#preview-status a", "download").endswith(".mp4")
    page.evaluate("document.getElementById('preview-video').play()")
    wait_for(page, "document.getElementById('preview-video').currentTime > 0.5")
