"""The command line: channels become providers, bad input is a one-line error."""

import pytest

from downloader.main import parse_args
from downloader.providers import HLSProvider, TwitchProvider


def test_channels_and_qualities():
    args = parse_args(
        ["desertbus", "test=http://127.0.0.1:1/test/master.m3u8", "--qualities", "source, 480p"]
    )
    assert args.qualities == ["source", "480p"]
    (name1, twitch), (name2, hls) = args.providers
    assert (name1, name2) == ("desertbus", "test")
    assert isinstance(twitch, TwitchProvider) and isinstance(hls, HLSProvider)
    assert hls.url == "http://127.0.0.1:1/test/master.m3u8"
    assert args.metrics_port == 8001 and args.base_dir == "."
    assert twitch.supported_codecs == ("av1", "h265", "h264")


def test_twitch_supported_codecs():
    args = parse_args(["desertbus", "--twitch-supported-codecs", "H264"])
    assert args.providers[0][1].supported_codecs == ("h264",)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["../up=http://x/m.m3u8"], "bad channel"),
        (["a=ftp://x/m.m3u8"], "http:// or https://"),
        (["a", "a=http://x/m.m3u8"], "given twice"),
        (["a", "--qualities", ","], "no qualities"),
        (["a", "--qualities", ".hidden"], "bad quality"),
        (["a", "--twitch-supported-codecs", "vp9,h264"], "bad --twitch-supported-codecs"),
        (["a", "--twitch-supported-codecs", ","], "bad --twitch-supported-codecs"),
        ([], "CHANNEL"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
