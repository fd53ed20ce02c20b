"""./build and the Dockerfiles.

There is no Docker engine here: ./build runs in a scratch git repository with a
recording fake `docker` on PATH, which checks what it asks Docker to do (which
Dockerfile, which tag, whether it pushes). The Dockerfiles are checked against
the tree they copy from.
"""

import re
import shutil
import subprocess

import pytest

from .conftest import ROOT

SERVICES = ["downloader", "restreamer", "backfiller", "cutter"]


@pytest.fixture
def repo(tmp_path):
    """A git repository holding ./build and a Dockerfile per service."""
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy2(ROOT / "build", work / "build")
    for service in SERVICES:
        (work / service).mkdir()
        shutil.copy2(ROOT / service / "Dockerfile", work / service / "Dockerfile")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "init"], check=True)
    commit = subprocess.run(
        git + ["rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return work, commit


def run_build(work, env, *args):
    return subprocess.run(
        [str(work / "build"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def builds(calls):
    """(Dockerfile, image) of each `docker build` call."""
    out = []
    for call in calls:
        if call[0] == "build":
            out.append((call[call.index("-f") + 1], call[call.index("-t") + 1]))
    return out


def test_build_tags_every_image_with_the_commit(repo, fake_docker):
    work, commit = repo
    env, calls = fake_docker
    result = run_build(work, env)
    assert result.returncode == 0, result.stderr
    assert builds(calls()) == [(f"{s}/Dockerfile", f"streamvault/{s}:{commit}") for s in SERVICES]
    # Built from the repository root, so every image can copy common.
    assert all(c[-1] == "." for c in calls() if c[0] == "build")
    assert not [c for c in calls() if c[0] == "push"]
    assert f"image tag {commit}" in result.stdout


def test_build_marks_a_dirty_tree_and_pushes_on_request(repo, fake_docker):
    work, commit = repo
    env, calls = fake_docker
    (work / "cutter" / "Dockerfile").write_text("FROM scratch\n")
    result = run_build(
        work, dict(env, PUSH="true", IMAGE_PREFIX="registry.example.org/sv-"), "cutter"
    )
    assert result.returncode == 0, result.stderr
    image = f"registry.example.org/sv-cutter:{commit}-dirty"
    assert builds(calls()) == [("cutter/Dockerfile", image)]
    assert [c for c in calls() if c[0] == "push"] == [["push", image]]


def test_build_refuses_an_unknown_service(repo, fake_docker):
    work, _ = repo
    env, calls = fake_docker
    result = run_build(work, env, "restreamer", "editor")
    assert result.returncode == 2
    assert "unknown service 'editor'" in result.stderr
    assert calls() == []


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_copies_what_exists_and_runs_the_service(service):
    text = (ROOT / service / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    for sources in re.findall(r"^COPY (?!--from=)(.+) \S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    # common in a layer of its own, before the service's own files.
    assert text.index("COPY common") < text.index(f"COPY {service} ")
    installs = re.findall(r"apt-get install -y --no-install-recommends ([^\\\n]+)", text)
    packages = set(installs[0].split())
    assert "telnet" in packages
    # ffmpeg exactly where cutting happens.
    assert ("ffmpeg" in packages) == (service in ("restreamer", "cutter"))
    assert f'ENTRYPOINT ["python", "-m", "{service}"]' in text


def test_restreamer_image_carries_the_editors_player():
    """hls.js comes from the pinned lock file in a node stage, into the final image."""
    text = (ROOT / "restreamer" / "Dockerfile").read_text()
    assert "npm ci" in text
    assert re.search(r"^COPY --from=editor \S+/hls\.js/dist ", text, re.M)
