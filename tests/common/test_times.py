import datetime

import pytest

from common.times import UTC, format_time, parse_time, to_utc


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-28T13:50:07.300", datetime.datetime(2026, 11, 28, 13, 50, 7, 300000, tzinfo=UTC)),
        ("2026-11-28T13:50:07Z", datetime.datetime(2026, 11, 28, 13, 50, 7, tzinfo=UTC)),
        ("2026-11-28T14:50:07+01:00", datetime.datetime(2026, 11, 28, 13, 50, 7, tzinfo=UTC)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00", "2" * 100, None])
def test_parse_time_refuses_with_a_reason(text):
    with pytest.raises(ValueError, match="ISO 8601|too long"):
        parse_time(text)


def test_format_time_round_trips_with_z():
    dt = datetime.datetime(2026, 11, 28, 13, 50, 7, 1, tzinfo=UTC)
    assert format_time(dt) == "2026-11-28T13:50:07.000001Z"
    assert parse_time(format_time(dt)) == dt


def test_to_utc_takes_naive_as_utc():
    naive = datetime.datetime(2026, 1, 1, 12)
    assert to_utc(naive) == datetime.datetime(2026, 1, 1, 12, tzinfo=UTC)
    plus_one = datetime.datetime(
        2026, 1, 1, 13, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert to_utc(plus_one) == datetime.datetime(2026, 1, 1, 12, tzinfo=UTC)
