"""Helpers for the deployment tests: the repository root, a fake `docker`."""

import os
import pathlib
import stat
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` on PATH that records its arguments: there is no Docker engine here.

    Returns `(env, calls)`: `env` puts the fake first on PATH; `calls()` reads back
    the recorded command lines (one list of arguments per call). Set
    `FAKE_DOCKER_ENGINE=up` in `env` to make `docker info` answer (the engine is
    "there"); by default it fails like a client with no engine. `docker run` prints
    `FAKE_DOCKER_OUTPUT`; `docker build` fails when `FAKE_DOCKER_BUILD=fail`.
    """
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    log = tmp_path / "docker-calls"
    script = bin_dir / "docker"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/usr/bin/env bash
            printf '%s\\0' "$@" >> {log}
            printf '\\n' >> {log}
            case "$1" in
              info) [ "${{FAKE_DOCKER_ENGINE:-}}" = up ] || {{ echo "Cannot connect" >&2; exit 1; }} ;;
              image) exit 1 ;;
              build) [ "${{FAKE_DOCKER_BUILD:-}}" != fail ] || {{ echo "no base image" >&2; exit 1; }} ;;
              run) printf '%s\\n' "${{FAKE_DOCKER_OUTPUT:-}}" ;;
            esac
            exit 0
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")

    def calls():
        if not log.exists():
            return []
        return [line.rstrip("\0").split("\0") for line in log.read_text().splitlines() if line]

    return env, calls
