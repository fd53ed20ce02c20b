# The image ./generate-docker-compose renders jsonnet with when Docker is there:
# Google's jsonnet (the `jsonnet` package on PyPI wraps the official C++
# implementation; Google publishes no image of its own), pinned to the version in
# requirements.txt so the host's .venv and this image render the same bytes.
# On the services' base image (see the Dockerfile), with Debian's Python.
FROM debian:bookworm-slim
ARG JSONNET_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/jsonnet \
 && /opt/jsonnet/bin/pip install --no-cache-dir --disable-pip-version-check "jsonnet==${JSONNET_VERSION}"
WORKDIR /src
ENTRYPOINT ["/opt/jsonnet/bin/python", "/src/tools/render_jsonnet.py"]
