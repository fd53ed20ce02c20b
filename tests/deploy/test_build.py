"""./build, the Dockerfile and the constraints file, as text.

./build runs in a scratch git repository with a recording fake `docker` on
PATH, which checks what it asks Docker to do (which target, which tag, whether
it pushes). The Dockerfile is checked against the tree it copies from; the
Docker test (test_docker.py) builds it for real.
"""

import re
import shutil
import subprocess

import pytest

from .conftest import ROOT

SERVICES = ["downloader", "restreamer", "backfiller", "cutter"]


@pytest.fixture
def repo(tmp_path):
    """A git repository holding ./build and the Dockerfile, with settings git ignores."""
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("build", "Dockerfile", ".gitignore"):
        shutil.copy2(ROOT / name, work / name)
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
    """(target, image) of each `docker build` call."""
    out = []
    for call in calls:
        if call[0] == "build":
            out.append((call[call.index("--target") + 1], call[call.index("-t") + 1]))
    return out


def test_build_tags_every_image_with_the_commit(repo, fake_docker):
    work, commit = repo
    env, calls = fake_docker
    result = run_build(work, env)
    assert result.returncode == 0, result.stderr
    assert builds(calls()) == [(s, f"streamvault/{s}:{commit}") for s in SERVICES]
    # Built from the repository root, so every image can copy common.
    assert all(c[-1] == "." for c in calls() if c[0] == "build")
    assert not [c for c in calls() if c[0] == "push"]
    assert f"image tag {commit}" in result.stdout
    # Recorded for ./generate-docker-compose.
    assert (work / ".build-tag").read_text() == f"{commit}\n"


def test_operator_settings_do_not_make_the_tree_dirty(repo, fake_docker):
    work, commit = repo
    env, calls = fake_docker
    (work / "settings.jsonnet").write_text("{ node_name: 'east' }\n")
    (work / "secrets").mkdir()
    (work / "secrets" / "db-password").write_text("x")
    (work / ".build-tag").write_text("old\n")
    result = run_build(work, env, "cutter")
    assert result.returncode == 0, result.stderr
    assert builds(calls()) == [("cutter", f"streamvault/cutter:{commit}")]


def test_build_marks_a_dirty_tree_and_pushes_on_request(repo, fake_docker):
    work, commit = repo
    env, calls = fake_docker
    (work / "Dockerfile").write_text("FROM scratch\n")
    result = run_build(
        work, dict(env, PUSH="true", IMAGE_PREFIX="registry.example.org/sv-"), "cutter"
    )
    assert result.returncode == 0, result.stderr
    image = f"registry.example.org/sv-cutter:{commit}-dirty"
    assert builds(calls()) == [("cutter", image)]
    assert [c for c in calls() if c[0] == "push"] == [["push", image]]


def test_build_refuses_an_unknown_service(repo, fake_docker):
    work, _ = repo
    env, calls = fake_docker
    result = run_build(work, env, "restreamer", "editor")
    assert result.returncode == 2
    assert "unknown service 'editor'" in result.stderr
    assert calls() == []


def stages():
    """The Dockerfile's stages: name -> (parent, text)."""
    text = (ROOT / "Dockerfile").read_text()
    out = {}
    for match in re.finditer(r"^FROM (\S+) AS (\S+)\n(.*?)(?=^FROM |\Z)", text, re.M | re.S):
        out[match[2]] = (match[1], match[3])
    return out


def test_every_image_starts_from_one_debian_base():
    text = (ROOT / "Dockerfile").read_text()
    bases = {p for p, _ in stages().values() if p not in stages()}
    assert bases == {"debian:bookworm-slim"}
    for sources in re.findall(r"^COPY (?!--from=)(.+) \S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source


def image_text(service):
    """The instructions that make a service's image: its stage and its parents'."""
    all_stages = stages()
    parts = []
    name = service
    while name in all_stages:
        parent, text = all_stages[name]
        parts.insert(0, text)
        name = parent
    return "".join(parts)


@pytest.mark.parametrize(
    "service, port", [("downloader", 8001), ("backfiller", 8002), ("restreamer", 8000), ("cutter", 8003)]
)  # fmt: skip
def test_image_runs_the_service_as_its_user_with_a_health_check(service, port):
    _, own = stages()[service]
    text = image_text(service)
    # common in a layer of its own, before the service's own files.
    assert own.index("COPY common") < own.index(f"COPY {service} ")
    assert "useradd --uid 10001" in text
    assert re.search(r"^USER streamvault$", own, re.M)
    assert re.search(rf"^HEALTHCHECK .*\n.*127\.0\.0\.1:{port}/metrics", own, re.M)
    assert f'ENTRYPOINT ["python", "-m", "{service}"]' in own
    assert "PIP_CONSTRAINT=/src/constraints.txt" in text
    packages = set()
    for install in re.findall(r"apt-get install -y --no-install-recommends ([^\\\n]+)", text):
        packages |= set(install.split())
    assert {"python3", "python3-venv", "telnet"} <= packages
    # ffmpeg exactly where cutting happens.
    assert ("ffmpeg" in packages) == (service in ("restreamer", "cutter"))


def test_restreamer_image_carries_only_the_player_it_serves():
    """hls.js comes from the pinned lock file in a stage of its own; one file goes on."""
    _, editor = stages()["editor"]
    assert "npm ci" in editor
    copies = re.findall(r"^COPY --from=editor (\S+)", stages()["restreamer"][1], re.M)
    assert copies == ["/static/node_modules/hls.js/dist/hls.min.js"]


def test_constraints_are_the_tested_environment():
    """constraints.txt pins every package .venv has, at the version it has (tools/freeze)."""
    frozen = subprocess.run(
        [str(ROOT / ".venv/bin/pip"), "freeze", "--exclude-editable", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip

    def pins(text):
        return {
            line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
            for line in text.splitlines()
            if "==" in line and not line.startswith("#")
        }

    constraints = pins((ROOT / "constraints.txt").read_text())
    installed = pins(frozen)
    assert installed and {k: constraints.get(k) for k in installed} == installed
    assert set(constraints) - set(installed) <= {"setuptools"}
    # The hand-written pins agree with the frozen ones.
    for name, version in pins((ROOT / "requirements.txt").read_text()).items():
        assert constraints[name] == version, name
