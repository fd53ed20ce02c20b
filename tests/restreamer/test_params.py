"""Query parameters: what a 400 says about them."""

import datetime

import pytest
from werkzeug.exceptions import BadRequest

from restreamer import params


@pytest.mark.parametrize("text", ["maybe", "2", "yes please"])
def test_a_bad_bool_names_the_accepted_words(text):
    with pytest.raises(BadRequest) as excinfo:
        params.parse_bool(text, "allow_holes")
    message = excinfo.value.description
    assert message.startswith(f"bad allow_holes {text!r}: expected true or false")
    for word in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        assert word in message


@pytest.mark.parametrize("text", ["True", "YES", " on ", "0", "Off", ""])
def test_the_words_it_names_are_accepted(text):
    assert params.parse_bool(text, "allow_holes") in (True, False)


@pytest.mark.parametrize("text", ["2026-11-28T13:50:07 01:00", "2026-11-28T13:50:07 0100"])
def test_an_offset_whose_plus_became_a_space_gets_a_hint(text):
    with pytest.raises(BadRequest) as excinfo:
        params.parse_time(text, "start")
    assert "write the offset's '+' as %2B, or give the time in UTC with Z" in (
        excinfo.value.description
    )


def test_other_bad_times_get_no_such_hint():
    with pytest.raises(BadRequest) as excinfo:
        params.parse_time("yesterday", "start")
    assert "%2B" not in excinfo.value.description


@pytest.mark.parametrize(
    "text, ok",
    [
        ("1999-12-31T23:59:59", False),
        ("2000-01-01T00:00:00", True),
        ("2099-12-31T23:59:59", True),
        ("2100-01-01T00:00:01", False),
        ("0001-01-01", False),
    ],
)
def test_times_a_store_cannot_hold_are_refused(text, ok):
    if ok:
        params.parse_time(text, "start")
    else:
        with pytest.raises(BadRequest, match="outside the years 2000 to 2099"):
            params.parse_time(text, "start")


def test_spans_read_as_english():
    assert params.format_span(datetime.timedelta(hours=1)) == "1 hour"
    assert params.format_span(datetime.timedelta(days=8)) == "8 days"
    assert params.format_span(datetime.timedelta(seconds=90)) == "90 seconds"
