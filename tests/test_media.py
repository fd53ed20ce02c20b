import datetime

from common.segments import get_best_segments
from tests.conftest import MEDIA_START
from tests.media import add_to_store


def test_media_is_five_six_second_segments(media):
    assert [d for _, d in media] == [datetime.timedelta(seconds=6)] * 5


def test_media_in_store_joins_without_holes(media, tmp_path):
    add_to_store(str(tmp_path), "chan", "source", MEDIA_START, media)
    end = MEDIA_START + datetime.timedelta(seconds=30)
    segments = get_best_segments(str(tmp_path / "chan" / "source"), MEDIA_START, end)
    assert None not in segments
    assert len(segments) == 5
