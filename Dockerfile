# streamvault's images: one Dockerfile, one target per service.
#
#   docker build --target downloader -t streamvault/downloader:TAG .   (./build does this)
#
# Every image starts FROM debian:bookworm-slim and runs Debian's own Python 3.11
# (the version the project is tested with) in a venv. One base image for all of
# them, including the stage that fetches the editor's player with Debian's npm:
# a single image to trust, mirror or rebuild from Debian's archive (with
# debootstrap) where no registry can be reached. The Python images of Docker Hub
# would bring a second distribution of Python, and node's a third base.
#
# Layers go from what changes least to what changes most: Debian packages,
# common with its third-party packages, then the service. Third-party versions
# come from constraints.txt (the tested environment, frozen by tools/freeze), so
# two builds of one commit install the same versions. Each image installs only
# the extras of common its service asks for (no flask or psycopg2 in the
# downloader).
#
# Services run as the user `streamvault`, uid and gid 10001: the store and the
# upload directories on the host must be writable by that uid (docs/OPERATIONS.md).

FROM debian:bookworm-slim AS python
# telnet: to reach a service's backdoor from inside its container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv telnet \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 streamvault \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin streamvault \
 && python3 -m venv /opt/streamvault
ENV PATH=/opt/streamvault/bin:$PATH \
    PIP_CONSTRAINT=/src/constraints.txt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
COPY constraints.txt /src/constraints.txt

# What cuts (the restreamer's /cut, the cutter) needs ffmpeg and ffprobe.
FROM python AS python-ffmpeg
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# The editor's player, installed from the pinned lock file; only the one file
# the restreamer serves goes on into its image.
FROM debian:bookworm-slim AS editor
RUN apt-get update \
 && apt-get install -y --no-install-recommends npm \
 && rm -rf /var/lib/apt/lists/*
COPY restreamer/restreamer/static/package.json restreamer/restreamer/static/package-lock.json /static/
RUN cd /static && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

# Each service: common (its own layer: it changes less often than the service),
# the service, then run as streamvault. The health check asks the service's
# /metrics on its default port; SIGTERM stops a service cleanly (run_service).

FROM python AS downloader
COPY common /src/common
RUN pip install /src/common
COPY downloader /src/downloader
RUN pip install /src/downloader && pip check
USER streamvault
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/metrics', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "downloader"]

FROM python AS backfiller
COPY common /src/common
RUN pip install /src/common
COPY backfiller /src/backfiller
RUN pip install /src/backfiller && pip check
USER streamvault
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8002/metrics', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "backfiller"]

FROM python-ffmpeg AS restreamer
COPY common /src/common
RUN pip install "/src/common[flask]"
COPY restreamer /src/restreamer
COPY --from=editor /static/node_modules/hls.js/dist/hls.min.js \
  /src/restreamer/restreamer/static/node_modules/hls.js/dist/hls.min.js
RUN pip install /src/restreamer && pip check
USER streamvault
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/metrics', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "restreamer"]

FROM python-ffmpeg AS cutter
COPY common /src/common
RUN pip install "/src/common[flask,database]"
COPY cutter /src/cutter
RUN pip install /src/cutter && pip check
USER streamvault
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8003/metrics', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "cutter"]
