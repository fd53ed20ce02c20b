"""The Twitch provider against a local fake of Twitch's GQL and usher endpoints.

The real hosts cannot be reached here. The fake follows the documented shapes
of the requests the twitch.tv web player makes: a POST to /gql with a
`Client-ID` header and the persisted `PlaybackAccessToken` query, answered with
`data.streamPlaybackAccessToken.{value, signature}` (null for an unknown
channel, an `errors` list for a bad query); then a GET of usher's
/api/channel/hls/<login>.m3u8 with `sig` and `token`, answered with a master
playlist of rendition groups (404 with a JSON error list when offline, 403 for
a bad signature). Its media playlists are the fault-injecting origin's.

A channel in `fmp4` is an enhanced-broadcasting one: asked with `h265` in
`supported_codecs`, usher answers in its v2 shape (no EXT-X-MEDIA; IVS-NAME,
STABLE-VARIANT-ID and IVS-VARIANT-SOURCE on each EXT-X-STREAM-INF) with the
HEVC source and Twitch's transcodes, HEVC and H.264 at one resolution; asked
for H.264 only, with the H.264 transcode alone.
"""

import http.server
import json
import os
import threading
import urllib.parse

import gevent
import prometheus_client
import pytest
import requests

from downloader.main import ChannelManager, Metrics
from downloader.providers import (
    TWITCH_CLIENT_ID,
    TWITCH_TOKEN_QUERY_HASH,
    ChannelOffline,
    ProviderError,
    TwitchProvider,
)
from tests.downloader.conftest import sample, segments_in, stored
from tests.util import wait_for


class FakeTwitch:
    def __init__(self, origin):
        self.origin = origin
        self.live = {}  # login -> origin channel name
        self.exists = set()
        self.tokens = {}  # signature -> token value
        self.requests = []
        self.query_hash = TWITCH_TOKEN_QUERY_HASH
        self.fmp4 = set()  # logins whose source is HEVC (usher v2, fMP4 renditions)

    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(("POST", self.path, dict(self.headers), body))
                if self.path != "/gql":
                    return self.reply(404, {"error": "Not Found"})
                if self.headers.get("Client-ID") != TWITCH_CLIENT_ID:
                    return self.reply(
                        400,
                        {
                            "error": "Bad Request",
                            "status": 400,
                            "message": 'The "Client-ID" header is missing from the request.',
                        },
                    )
                query = json.loads(body)
                persisted = query.get("extensions", {}).get("persistedQuery", {})
                if (
                    query.get("operationName") != "PlaybackAccessToken"
                    or persisted.get("sha256Hash") != fake.query_hash
                ):
                    return self.reply(200, {"errors": [{"message": "PersistedQueryNotFound"}]})
                variables = query["variables"]
                assert variables["isLive"] is True and variables["isVod"] is False
                login = variables["login"]
                if login not in fake.exists:
                    return self.reply(200, {"data": {"streamPlaybackAccessToken": None}})
                value = json.dumps({"channel": login, "expires": 1_900_000_000, "chansub": {}})
                signature = f"sig{len(fake.tokens)}"
                fake.tokens[signature] = value
                return self.reply(
                    200,
                    {
                        "data": {
                            "streamPlaybackAccessToken": {
                                "value": value,
                                "signature": signature,
                                "__typename": "PlaybackAccessToken",
                            }
                        },
                        "extensions": {"operationName": "PlaybackAccessToken"},
                    },
                )

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(url.query)
                fake.requests.append(("GET", url.path, dict(self.headers), params))
                prefix = "/api/channel/hls/"
                if not (url.path.startswith(prefix) and url.path.endswith(".m3u8")):
                    return self.reply(404, {"error": "Not Found"})
                login = url.path[len(prefix) : -len(".m3u8")]
                signature = params.get("sig", [""])[0]
                token = params.get("token", [""])[0]
                if fake.tokens.get(signature) != token or json.loads(token)["channel"] != login:
                    return self.reply(
                        403, [{"error": "Unauthorized", "error_code": "invalid_token"}]
                    )
                if login not in fake.live:
                    return self.reply(
                        404,
                        [{"url": self.path, "error": "Can not find channel", "type": "error",
                          "error_code": "vod_manifest_restricted"}],
                    )  # fmt: skip
                if "h264" not in params.get("supported_codecs", [""])[0].split(","):
                    return self.reply(400, "HEVC only: fMP4", "text/plain")
                channel = fake.live[login]
                if login in fake.fmp4:
                    codecs = params.get("supported_codecs", [""])[0].split(",")
                    return self.reply(200, fake.v2_master(channel, "h265" in codecs))
                text = (
                    "#EXTM3U\n"
                    '#EXT-X-TWITCH-INFO:NODE="video-edge-test",MANIFEST-NODE-TYPE="weaver_cluster"\n'
                    '#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="chunked",NAME="720p60 (source)",AUTOSELECT=YES,DEFAULT=YES\n'
                    '#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS="avc1.64001F,mp4a.40.2",VIDEO="chunked",FRAME-RATE=60.000\n'
                    f"{fake.origin.media_url(channel, 'source')}\n"
                    '#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="480p30",NAME="480p",AUTOSELECT=YES,DEFAULT=YES\n'
                    '#EXT-X-STREAM-INF:BANDWIDTH=1400000,RESOLUTION=852x480,CODECS="avc1.4D401F,mp4a.40.2",VIDEO="480p30",FRAME-RATE=30.000\n'
                    f"{fake.origin.media_url(channel, '480p')}\n"
                )
                return self.reply(200, text, "application/vnd.apple.mpegurl")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def v2_master(self, channel, hevc):
        media = self.origin.media_url
        lines = ["#EXTM3U", '#EXT-X-SESSION-DATA:DATA-ID="NODE",VALUE="video-edge-test"']
        variants = [
            ("source", 'hvc1.1.2.L123.90,mp4a.40.2', 6_000_000, "1080p60", "1080p60", True),
            ("720p60_h265", 'hvc1.1.2.L93.90,mp4a.40.2', 2_500_000, "720p60", "720p60-hevc", False),
            ("720p60", "avc1.4D401F,mp4a.40.2", 3_000_000, "720p60", "720p60", False),
        ]  # fmt: skip
        for stream, codecs, bandwidth, name, stable, source in variants:
            if not hevc and codecs.startswith("hvc1"):
                continue
            height = 1080 if name.startswith("1080") else 720
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={height * 16 // 9}x{height},"
                f'CODECS="{codecs}",FRAME-RATE=60.000,STABLE-VARIANT-ID="{stable}",'
                f'IVS-NAME="{name}"' + (',IVS-VARIANT-SOURCE="true"' if source else "")
            )
            lines.append(media(channel, stream))
        return "\n".join(lines) + "\n"

    def provider(self, login, **options):
        return TwitchProvider(
            login,
            gql_url=f"{self.base}/gql",
            usher_url=f"{self.base}/api/channel/hls/{{channel}}.m3u8",
            **options,
        )

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def twitch(origin):
    fake = FakeTwitch(origin).start()
    yield fake
    fake.stop()


def test_token_then_usher_gives_named_renditions(twitch, origin):
    origin.add_channel("desertbus", ["source", "480p"])
    twitch.exists.add("desertbus")
    twitch.live["desertbus"] = "desertbus"
    urls = twitch.provider("DesertBus").media_playlists(requests.Session())
    assert urls == {
        "source": origin.media_url("desertbus", "source"),
        "480p": origin.media_url("desertbus", "480p"),
    }
    (_, _, headers, body), (_, _, _, params) = twitch.requests
    assert json.loads(body)["variables"]["login"] == "desertbus"
    assert params["allow_source"] == ["true"] and params["supported_codecs"] == ["av1,h265,h264"]


def test_offline_and_unknown_channels_are_offline(twitch):
    twitch.exists.add("sleeping")
    with pytest.raises(ChannelOffline, match="offline"):
        twitch.provider("sleeping").media_playlists(requests.Session())
    with pytest.raises(ChannelOffline, match="no such channel"):
        twitch.provider("nobody").media_playlists(requests.Session())


def test_api_changes_are_errors_not_offline(twitch):
    twitch.exists.add("desertbus")
    twitch.query_hash = "changed"
    with pytest.raises(ProviderError, match="PersistedQueryNotFound"):
        twitch.provider("desertbus").media_playlists(requests.Session())
    bad_client = TwitchProvider("desertbus", client_id="nope", gql_url=f"{twitch.base}/gql")
    with pytest.raises(requests.HTTPError):
        bad_client.media_playlists(requests.Session())


def test_records_a_twitch_channel_without_its_ads(twitch, origin, tmp_path, fast):
    stream = origin.add_channel("desertbus", ["source", "480p"])["source"]
    stream.window = 10
    twitch.exists.add("desertbus")
    twitch.live["desertbus"] = "desertbus"
    stream.publish(2)
    stream.publish(2, title="Amazon|123", tags=["#EXT-X-DISCONTINUITY"])
    stream.publish(2, tags=["#EXT-X-DISCONTINUITY"])
    metrics = Metrics(registry=prometheus_client.CollectorRegistry())
    manager = ChannelManager(
        "desertbus", twitch.provider("desertbus"), ["source"], str(tmp_path), metrics
    )
    greenlet = gevent.spawn(manager.run)
    try:
        wait_for(lambda: len(stored(tmp_path)) >= 4, interval=0.01, what="4 segments")
    finally:
        manager.stop()
        greenlet.join(10)
    files = stored(tmp_path)
    assert len(files) == 4
    assert all(f.startswith(os.path.join("desertbus", "source")) for f in files)
    assert (
        sample(
            metrics,
            "downloader_ad_segments_skipped_total",
            channel="desertbus",
            quality="source",
            kind="twitch_title",
        )
        == 2
    )


def test_an_enhanced_broadcasting_channel_is_named_by_codec(twitch, origin):
    origin.add_channel("big", ["source", "720p60_h265", "720p60"])
    twitch.exists.add("big")
    twitch.live["big"] = "big"
    twitch.fmp4.add("big")
    provider = twitch.provider("big")
    assert provider.media_playlists(requests.Session()) == {
        "source": origin.media_url("big", "source"),
        "720p60_h265": origin.media_url("big", "720p60_h265"),
        "720p60": origin.media_url("big", "720p60"),
    }
    assert provider.codecs == {"source": "h265", "720p60_h265": "h265", "720p60": "h264"}
    h264_only = twitch.provider("big", supported_codecs=("h264",))
    assert h264_only.media_playlists(requests.Session()) == {
        "720p60": origin.media_url("big", "720p60")
    }
    assert twitch.requests[-1][3]["supported_codecs"] == ["h264"]


def test_records_twitch_fmp4_hevc_and_h264_without_the_preroll(
    twitch, origin, tmp_path, fast, fmp4_parts
):
    """HEVC source and an H.264 transcode, both fMP4; a preroll ad with its own
    init section and DATERANGE; then the stream, whose EXT-X-MAP changes midway
    (the encoder restarted); Twitch's discontinuities around the ad."""
    streams = origin.add_channel("big", ["source", "720p60_h265", "720p60"])
    twitch.exists.add("big")
    twitch.live["big"] = "big"
    twitch.fmp4.add("big")
    expected = {}
    for quality, codec in (("source", "hevc"), ("720p60", "h264")):
        stream = streams[quality]
        stream.window = 12
        init, media = fmp4_parts(codec)
        ad_init, ad_media = fmp4_parts("h264")
        stream.set_init("ad-init.mp4", ad_init)
        daterange = (
            '#EXT-X-DATERANGE:ID="stitched-ad-1-4.000",CLASS="twitch-stitched-ad",'
            f'START-DATE="{stream.next_pdt.isoformat()}",DURATION=4.000'
        )
        stream.publish(1, title="Amazon|1", tags=[daterange], data=ad_media[0])
        stream.publish(1, title="Amazon|1", data=ad_media[1])
        stream.set_init("init-0.mp4", init)
        stream.publish(1, tags=["#EXT-X-DISCONTINUITY"], data=media[0])
        stream.publish(1, tags=["#EXT-X-DISCONTINUITY"], data=media[1])  # a bogus one
        stream.set_init("init-1.mp4", init[:-1] + b"\0")  # a new MAP: other bytes
        stream.publish(1, tags=["#EXT-X-DISCONTINUITY"], data=media[2])
        expected[quality] = [init + media[0], init + media[1], init[:-1] + b"\0" + media[2]]
    metrics = Metrics(registry=prometheus_client.CollectorRegistry())
    manager = ChannelManager(
        "big", twitch.provider("big"), ["source", "720p60"], str(tmp_path), metrics
    )
    greenlet = gevent.spawn(manager.run)
    try:
        wait_for(lambda: len(stored(tmp_path)) >= 6, interval=0.01, what="6 segments")
    finally:
        manager.stop()
        greenlet.join(10)
    for quality in ("source", "720p60"):
        segments = segments_in(tmp_path, "big", quality)
        assert [s.container for s in segments] == ["mp4"] * 3
        assert [s.type for s in segments] == ["full"] * 3
        with_bytes = []
        for segment in segments:
            with open(segment.path, "rb") as f:
                with_bytes.append(f.read())
        assert with_bytes == expected[quality]
        assert (
            sample(
                metrics,
                "downloader_ad_segments_skipped_total",
                channel="big",
                quality=quality,
                kind="twitch_title",
            )
            == 2
        )
        assert not origin.requests_for(f"/big/{quality}/ad-init.mp4")
    assert sample(
        metrics, "downloader_quality_codec_info", channel="big", quality="source", codec="h265"
    )
    assert sample(
        metrics, "downloader_quality_codec_info", channel="big", quality="720p60", codec="h264"
    )
