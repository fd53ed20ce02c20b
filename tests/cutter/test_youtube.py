"""The YouTube backend against a local fake of Google's documented upload protocol."""

import hashlib
import threading

import prometheus_client
import pytest

import common.cut
import common.cut_mp4
from common.segments import get_best_segments
from cutter.jobs import State
from cutter.main import Cutter, ProcessingWatcher
from cutter.upload_backends import (
    PermanentUploadError,
    RetryableUploadError,
    UploadOutcomeUnknown,
    YouTubeBackend,
)
from tests.conftest import MEDIA_START
from tests.cutter.conftest import CHANNEL, QUALITY, at, job_fields, probe, within_a_frame
from tests.cutter.fake_youtube import CHUNK_QUANTUM, FakeYouTube, Fault
from tests.media import add_to_store

# The smallest chunk Google allows, so that the test clip takes several.
CHUNK = CHUNK_QUANTUM


@pytest.fixture
def fake():
    fake = FakeYouTube()
    yield fake
    fake.close()


@pytest.fixture
def backend(fake, tmp_path):
    return YouTubeBackend(
        "yt", fake.credentials(tmp_path / "creds.json"), chunk_size=CHUNK, retries=3,
        backoff=(0.01, 0.05), timeouts=(5, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def clip(store, tmp_path_factory):
    """A real 12 s cut of the shared media (some hundreds of kB), made once."""
    import common.cut
    from common.segments import get_best_segments
    from tests.cutter.conftest import CHANNEL, QUALITY, at

    segments = get_best_segments(f"{store}/{CHANNEL}/{QUALITY}", at(4), at(16))
    path = tmp_path_factory.mktemp("clip") / "clip.ts"
    with open(path, "wb") as f:
        for chunk in common.cut.cut(segments, at(4), at(16)):
            f.write(chunk)
    data = path.read_bytes()
    assert len(data) > 2 * CHUNK  # so that the upload takes three chunks or more
    return str(path), data


class FakeJob:
    id = 7
    title = "A clip"
    description = "From the stream"
    video_id = None
    video_link = None


class Finalizing:
    """The cutter's `finalizing` callback: records when it was called."""

    def __init__(self, fake):
        self.fake = fake
        self.calls = []

    def __call__(self):
        self.calls.append(list(self.fake.kinds()))


def upload(backend, fake, clip):
    finalizing = Finalizing(fake)
    result = backend.upload(FakeJob(), clip[0], finalizing, threading.Event())
    return result, finalizing


def the_video(fake):
    (video,) = fake.videos.values()
    return video


def chunks(clip):
    return -(-len(clip[1]) // CHUNK)


def test_upload(backend, fake, clip):
    result, finalizing = upload(backend, fake, clip)
    before_final = ["token", "session"] + ["chunk"] * (chunks(clip) - 1)
    assert fake.kinds() == before_final + ["final"]
    # FINALIZING came after every reversible request, just before the final one.
    assert finalizing.calls == [before_final]
    video = the_video(fake)
    assert video.data == clip[1]
    assert video.content_type == "video/mp2t"
    assert video.resource["snippet"] == {
        "title": "A clip",
        "description": "From the stream",
        "categoryId": "20",
    }
    assert video.resource["status"]["privacyStatus"] == "private"
    assert result.video_id == video.id
    assert result.video_link == f"https://youtu.be/{video.id}"
    assert result.state == State.TRANSCODING


@pytest.mark.slow
def test_mp4_cut_is_sent_as_video_mp4(backend, fake, fmp4_media, tmp_path):
    add_to_store(str(tmp_path), CHANNEL, QUALITY, MEDIA_START, fmp4_media("hevc"))
    segments = get_best_segments(f"{tmp_path}/{CHANNEL}/{QUALITY}", at(0.5), at(4.5))
    container = common.cut_mp4.output_container(segments)
    assert container == "mp4"
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"".join(common.cut.cut(segments, at(0.5), at(4.5), container=container)))
    result, _ = upload(backend, fake, (str(path), path.read_bytes()))
    video = the_video(fake)
    assert video.content_type == "video/mp4"  # the session's and every chunk's
    assert video.data == path.read_bytes() and result.video_id == video.id


def test_resume_after_5xx(backend, fake, clip):
    fake.script.append(Fault("chunk", 503))
    upload(backend, fake, clip)
    assert fake.log[:5] == [
        ("token", ""), ("session", ""), ("chunk", 0), ("status", 0), ("chunk", 0)
    ]  # fmt: skip
    assert the_video(fake).data == clip[1]


def test_resume_after_a_cut_connection(backend, fake, clip):
    # The connection drops 100000 bytes into the first chunk: the server kept
    # them, says so when asked, and the upload goes on from there.
    fake.script.append(Fault("chunk", "drop", after=100_000))
    upload(backend, fake, clip)
    assert fake.log[2:5] == [("chunk", 0), ("status", 100_000), ("chunk", 100_000)]
    assert the_video(fake).data == clip[1]
    assert hashlib.sha256(the_video(fake).data).digest() == hashlib.sha256(clip[1]).digest()


def test_resume_on_the_final_request(backend, fake, clip):
    fake.script.append(Fault("final", "drop", after=1000))
    result, finalizing = upload(backend, fake, clip)
    assert len(finalizing.calls) == 1  # entered once, before the first final attempt
    final = (chunks(clip) - 1) * CHUNK
    assert fake.log[-3:] == [("final", final), ("status", final + 1000), ("final", final + 1000)]
    assert the_video(fake).data == clip[1] and len(fake.videos) == 1


def test_quota_exceeded(backend, fake, clip):
    fake.script.append(Fault("session", "quota"))
    with pytest.raises(PermanentUploadError, match="quotaExceeded"):
        upload(backend, fake, clip)
    assert fake.videos == {} and fake.sessions == {}


def test_expired_token_is_refreshed(backend, fake, clip):
    backend._access_token()
    fake.expire_tokens()
    upload(backend, fake, clip)
    assert fake.kinds()[:3] == ["token", "token", "session"]
    assert the_video(fake).data == clip[1]


def test_revoked_refresh_token(backend, fake, clip):
    backend.refresh_token = "revoked"
    with pytest.raises(PermanentUploadError, match="refused the refresh token"):
        upload(backend, fake, clip)


def test_gives_up_before_finalizing(backend, fake, clip):
    fake.script += [Fault("chunk", 500)] + [Fault("status", 502)] * 4
    with pytest.raises(RetryableUploadError, match="failed 4 times"):
        upload(backend, fake, clip)
    assert fake.videos == {}


def test_a_server_that_keeps_nothing_cannot_loop_us(backend, fake, clip):
    fake.script += [Fault("chunk", "ignore")] * 10
    with pytest.raises(RetryableUploadError, match="failed 4 times, last: YouTube kept none"):
        upload(backend, fake, clip)
    assert fake.kinds().count("chunk") == 4


def test_unknown_outcome_after_finalizing(backend, fake, clip):
    fake.script += [Fault("final", 500)] + [Fault("status", 503)] * 4
    with pytest.raises(UploadOutcomeUnknown, match="failed 4 times"):
        upload(backend, fake, clip)


def test_refusal_of_the_final_request(backend, fake, clip):
    fake.script.append(Fault("final", 400))
    with pytest.raises(PermanentUploadError, match="refused the upload: HTTP 400"):
        upload(backend, fake, clip)
    assert fake.videos == {}


def test_processing_status(backend, fake, clip):
    result, _ = upload(backend, fake, clip)
    job = FakeJob()
    job.video_id, job.video_link = result.video_id, result.video_link
    assert backend.check(job).done is False  # processing
    assert backend.check(job).done is True
    fake.videos[result.video_id].reject = "duplicate"
    rejected = backend.check(job)
    assert rejected.done is False and rejected.error.endswith("was rejected: duplicate")
    fake.script.append(Fault("videos", 503))
    assert backend.check(job) is None  # could not ask: try again later
    job.video_id = "gone"
    assert backend.check(job).error == "YouTube video gone no longer exists"


# --- through the cutter -------------------------------------------------------


def run_job(jobs, store, backend, **fields):
    registry = prometheus_client.CollectorRegistry()
    cutter = Cutter(jobs, store, "node1", {"yt": backend}, registry, listen=False)
    watcher = ProcessingWatcher(jobs, "node1", {"yt": backend}, metrics=cutter.metrics)
    job = jobs.submit(**job_fields(upload_location="yt", **fields))
    cutter.run_once()
    return jobs.get(job.id), watcher, registry


def test_job_through_youtube(jobs, store, backend, fake, tmp_path):
    job, watcher, registry = run_job(jobs, store, backend, start=4, end=16)
    assert job.state == State.TRANSCODING, job.error
    assert job.uploader == "node1" and job.video_link == f"https://youtu.be/{job.video_id}"
    watcher.run_once()
    assert jobs.get(job.id).state == State.TRANSCODING  # still processing
    watcher.run_once()
    done = jobs.get(job.id)
    assert done.state == State.DONE and done.uploader is None
    path = tmp_path / "uploaded.ts"
    path.write_bytes(fake.videos[job.video_id].data)
    duration, errors = probe(str(path))
    assert within_a_frame(duration, 12) and errors == ""
    labels = {"location": "yt", "state": "DONE"}
    assert registry.get_sample_value("cutter_jobs_processed_total", labels) == 1


def test_rejected_video_needs_a_person(jobs, store, backend, fake):
    job, watcher, _ = run_job(jobs, store, backend, start=4, end=16)
    fake.videos[job.video_id].reject = "duplicate"
    watcher.run_once()
    failed = jobs.get(job.id)
    assert failed.state == State.UNEDITED and failed.video_id is None
    assert failed.error == f"YouTube video {job.video_link} was rejected: duplicate"


def test_quota_error_needs_a_person(jobs, store, backend, fake):
    fake.script.append(Fault("session", "quota"))
    job, _, _ = run_job(jobs, store, backend)
    assert job.state == State.UNEDITED
    assert job.error.startswith("upload failed: YouTube refused the upload: HTTP 403 quotaExceeded")


def test_bad_credentials_file(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text('{"client_id": "x"}')
    with pytest.raises(ValueError, match="cannot read YouTube credentials .*client_secret"):
        YouTubeBackend("yt", str(path))
