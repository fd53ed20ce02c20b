# Test stand-in for prom/prometheus:v2.55.1 (see README.md): Debian's
# Prometheus at /bin/prometheus, its data in /prometheus, run as nobody.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /prometheus && chown nobody:nogroup /prometheus
USER nobody
ENTRYPOINT ["/bin/prometheus"]
