# Test stand-in for postgres:15 (see README.md): Debian's PostgreSQL 15.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
COPY standin-postgres /usr/local/bin/standin-postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
# Fast shutdown, as the official image does: SIGTERM would wait for clients.
STOPSIGNAL SIGINT
ENTRYPOINT ["standin-postgres"]
