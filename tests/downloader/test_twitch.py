"""The Twitch provider against a local fake of Twitch's GQL and usher endpoints.

The real hosts cannot be reached here. The fake follows the documented shapes
of the requests the twitch.tv web player makes: a POST to /gql with a
`Client-ID` header and the persisted `PlaybackAccessToken` query, answered with
`data.streamPlaybackAccessToken.{value, signature}` (null for an unknown
channel, an `errors` list for a bad query); then a GET of usher's
/api/channel/hls/<login>.m3u8 with `sig` and `token`, answered with a master
playlist of rendition groups (404 with a JSON error list when offline, 403 for
a bad signature). Its media playlists are the fault-injecting origin's.
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
from tests.downloader.conftest import sample, stored
from tests.util import wait_for


class FakeTwitch:
    def __init__(self, origin):
        self.origin = origin
        self.live = {}  # login -> origin channel name
        self.exists = set()
        self.tokens = {}  # signature -> token value
        self.requests = []
        self.query_hash = TWITCH_TOKEN_QUERY_HASH

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

    def provider(self, login):
        return TwitchProvider(
            login,
            gql_url=f"{self.base}/gql",
            usher_url=f"{self.base}/api/channel/hls/{{channel}}.m3u8",
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
    assert params["allow_source"] == ["true"] and params["supported_codecs"] == ["h264"]


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
