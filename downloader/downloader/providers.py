"""Providers: how a channel's media playlist URLs are found.

A provider's `media_playlists(session)` returns `{quality: media playlist URL}`
(and leaves each quality's video codec family, for metrics, in `codecs`) and raises `ChannelOffline` when there is nothing to record right now (the
manager retries with backoff). Other errors (network, a 5xx, a malformed
answer) propagate; the manager logs them and retries the same way.

- `hls`: a URL given on the command line, master or media playlist.
- `twitch`: a playback access token from Twitch's GQL API, then the usher
  master playlist, which lists one media playlist per rendition. Those URLs
  expire after 24 h; the manager replaces its workers long before.
"""

import json
import logging
import random

from common.segments import validate_name_part

from . import playlist as playlists

logger = logging.getLogger(__name__)

# Connect and read timeouts for provider requests, in seconds. A master playlist
# or a token is a few KB; longer than this means the origin is in trouble and
# the manager's retry is the better path.
REQUEST_TIMEOUTS = (5, 10)

# Twitch's public web player client id and its persisted PlaybackAccessToken query
# (documented by every third-party player: the same request twitch.tv makes).
TWITCH_CLIENT_ID = "kimne78kx3ncx6brgo4mv6wki5h1ko"
TWITCH_GQL_URL = "https://gql.twitch.tv/gql"
TWITCH_USHER_URL = "https://usher.ttvnw.net/api/channel/hls/{channel}.m3u8"
TWITCH_TOKEN_QUERY_HASH = "0828119ded1c13477966434e15800ff57ddacf13ba1911c129dc2200705b0712"
# The codecs usher is told the recorder takes, best first. Twitch's enhanced
# broadcasting channels send their source as HEVC or AV1 (fMP4, which the store
# holds) at up to 1440p; asking for H.264 only would record a 1080p transcode.
TWITCH_CODECS = ("av1", "h265", "h264")


class ChannelOffline(Exception):
    """Nothing to record now: no such channel, not live, or the playlist is gone."""


class ProviderError(Exception):
    """The provider's API answered, but not in a shape we understand."""


def _playlist_text(session, url, what):
    """GET a playlist. 403/404/410 → ChannelOffline; other errors propagate."""
    response = session.get(url, timeout=REQUEST_TIMEOUTS)
    if response.status_code in (403, 404, 410):
        raise ChannelOffline(f"{what}: HTTP {response.status_code} from {url}")
    response.raise_for_status()
    return response.text, response.url


class HLSProvider:
    """Any HLS URL. A master playlist's variants are named by `name_variants`; a
    media playlist is quality `source`."""

    name = "hls"

    def __init__(self, channel, url):
        self.channel = channel
        self.url = url
        self.codecs = {}

    def media_playlists(self, session):
        text, final_url = _playlist_text(session, self.url, self.channel)
        try:
            parsed = playlists.load(text, final_url)
        except playlists.PlaylistError as e:
            # An origin that answers 200 with an error page is as good as offline.
            raise ChannelOffline(str(e)) from None
        if not parsed.is_variant:
            self.codecs = {"source": "unknown"}
            return {"source": self.url}
        names = playlists.name_variants(parsed)
        families = {
            p.absolute_uri: playlists.codec_family(p.stream_info.codecs) for p in parsed.playlists
        }
        self.codecs = {quality: families.get(url, "unknown") for quality, url in names.items()}
        return names

    def __repr__(self):
        return f"HLSProvider({self.url!r})"


class TwitchProvider:
    """A Twitch channel, through the GQL PlaybackAccessToken query and usher.

    How it fails: an unknown or banned channel gives a null token
    (`ChannelOffline`); an offline channel gives usher 404 (`ChannelOffline`);
    a GQL error list (e.g. the persisted query hash changed) raises
    ProviderError so that it shows in logs and metrics rather than looking
    like an offline channel.
    """

    name = "twitch"

    def __init__(
        self,
        channel,
        client_id=TWITCH_CLIENT_ID,
        gql_url=TWITCH_GQL_URL,
        usher_url=TWITCH_USHER_URL,
        supported_codecs=TWITCH_CODECS,
    ):
        self.channel = channel
        self.client_id = client_id
        self.gql_url = gql_url
        self.usher_url = usher_url
        self.supported_codecs = tuple(supported_codecs)
        self.codecs = {}

    def access_token(self, session):
        """(value, signature) of a live playback access token."""
        body = {
            "operationName": "PlaybackAccessToken",
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": TWITCH_TOKEN_QUERY_HASH}},
            "variables": {
                "isLive": True,
                "login": self.channel.lower(),
                "isVod": False,
                "vodID": "",
                "playerType": "site",
            },
        }
        response = session.post(
            self.gql_url,
            data=json.dumps(body),
            headers={"Client-ID": self.client_id, "Content-Type": "text/plain;charset=UTF-8"},
            timeout=REQUEST_TIMEOUTS,
        )
        response.raise_for_status()
        try:
            answer = response.json()
        except ValueError:
            raise ProviderError("twitch GQL: answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ProviderError("twitch GQL: answer is not a JSON object")
        if answer.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in answer["errors"])
            raise ProviderError(f"twitch GQL error: {messages}")
        token = (answer.get("data") or {}).get("streamPlaybackAccessToken")
        if token is None:
            raise ChannelOffline(
                f"twitch: no playback token for {self.channel!r} (no such channel?)"
            )
        try:
            return token["value"], token["signature"]
        except (KeyError, TypeError):
            raise ProviderError("twitch GQL: token without value/signature") from None

    def master_url(self, session):
        value, signature = self.access_token(session)
        params = {
            "player": "twitchweb",
            "p": str(random.randrange(1_000_000, 10_000_000)),
            "type": "any",
            "allow_source": "true",
            "allow_audio_only": "true",
            "allow_spectre": "false",
            "fast_bread": "true",
            # HEVC and AV1 renditions come as fMP4; without them in the list an
            # enhanced-broadcasting channel's source is not offered at all.
            "supported_codecs": ",".join(self.supported_codecs),
            "sig": signature,
            "token": value,
        }
        return self.usher_url.format(channel=self.channel.lower()), params

    def media_playlists(self, session):
        url, params = self.master_url(session)
        response = session.get(url, params=params, timeout=REQUEST_TIMEOUTS)
        if response.status_code in (403, 404):
            raise ChannelOffline(
                f"twitch: {self.channel} is offline (usher {response.status_code})"
            )
        response.raise_for_status()
        try:
            master = playlists.load(response.text, response.url)
        except playlists.PlaylistError as e:
            raise ProviderError(f"twitch usher: {e}") from None
        if not master.is_variant:
            raise ProviderError("twitch usher: not a master playlist")
        names, self.codecs = playlists.name_twitch_variants(master, response.text)
        return names

    def __repr__(self):
        return f"TwitchProvider({self.channel!r})"


def parse_supported_codecs(text):
    """`av1,h265,h264` → a tuple of Twitch codec names; ValueError if one is unknown."""
    codecs = tuple(c.strip().lower() for c in text.split(",") if c.strip())
    unknown = [c for c in codecs if c not in TWITCH_CODECS]
    if unknown or not codecs:
        raise ValueError(
            f"bad --twitch-supported-codecs {text!r}: expected some of {','.join(TWITCH_CODECS)}"
        )
    return codecs


def provider_for(spec, **twitch_options):
    """`NAME` → (NAME, TwitchProvider); `NAME=URL` → (NAME, HLSProvider). ValueError if bad."""
    name, sep, url = spec.partition("=")
    validate_name_part(name, "channel")
    if sep:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"bad channel {spec!r}: URL must start with http:// or https://")
        return name, HLSProvider(name, url)
    return name, TwitchProvider(name, **twitch_options)
