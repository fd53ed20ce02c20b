# The image ./generate-docker-compose renders jsonnet with when Docker is there:
# Google's jsonnet (the `jsonnet` package on PyPI wraps the official C++
# implementation; Google publishes no image of its own), pinned to the version in
# requirements.txt so the host's .venv and this image render the same bytes.
FROM python:3.11-slim-bookworm
ARG JSONNET_VERSION
RUN pip install --no-cache-dir --disable-pip-version-check "jsonnet==${JSONNET_VERSION}"
WORKDIR /src
ENTRYPOINT ["python", "/src/tools/render_jsonnet.py"]
