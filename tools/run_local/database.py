"""The PostgreSQL the cutters share: the system cluster, else a private one."""

import hashlib
import os
import shutil
import subprocess

from .children import Failed, listdir, progress

# PostgreSQL: the private cluster's socket lives in its directory (no TCP port,
# so no clash with anything); the server refuses to run as root.
PG_PORT = 5432
PG_USER = "streamvault"
PG_DATABASE = "streamvault"
SOCKET_PATH_MAX = 107  # bytes, sun_path on Linux, including .s.PGSQL.PORT


def system_database_name(data_dir):
    """The system cluster's database for `data_dir`: the same one every run."""
    digest = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:8]
    return f"streamvault_local_{digest}"


class Database:
    """The PostgreSQL the cutters share: the system one, else a private cluster.

    `mode` is `auto` (system if it answers, else private), `system` or `private`.
    The system cluster gets a database per data directory (so two checkouts do
    not share jobs; the same data directory finds its jobs again). The private
    cluster lives in DATA/postgres, listens on a socket there only, and trusts
    local connections (nothing else can reach it). As root it runs as the
    `postgres` user, which must be able to reach the data directory.
    """

    def __init__(self, data_dir, mode="auto"):
        self.data_dir = data_dir
        self.mode = mode
        self.dir = os.path.join(data_dir, "postgres")
        self.pgdata = os.path.join(self.dir, "data")
        self.private = False
        self.dsn = None
        self.description = None
        self.user = None

    def start(self):
        """Find or start the database as `mode` says; returns its DSN (Failed if none)."""
        if self.mode in ("auto", "system"):
            error = self._try_system()
            if error is None:
                return self.dsn
            if self.mode == "system":
                raise Failed(f"the system PostgreSQL does not answer: {error}")
        self._start_private()
        return self.dsn

    def _try_system(self):
        import psycopg2

        name = system_database_name(self.data_dir)
        try:
            conn = psycopg2.connect("dbname=postgres", connect_timeout=5)
        except psycopg2.Error as e:
            return str(e).strip().splitlines()[0]
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name})
                if cur.fetchone() is None:
                    # Names cannot be parameters; this one is made of [a-z0-9_] only.
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.dsn = f"dbname={name}"
        self.description = f"the system PostgreSQL, database {name}"
        return None

    def _bin(self, name):
        found = shutil.which(name)
        if found:
            return found
        candidates = sorted(
            (d for d in listdir("/usr/lib/postgresql") if d.replace(".", "").isdigit()),
            key=lambda v: [int(p) for p in v.split(".")],
        )
        for version in reversed(candidates):
            path = os.path.join("/usr/lib/postgresql", version, "bin", name)
            if os.access(path, os.X_OK):
                return path
        raise Failed(f"{name} not found: install PostgreSQL (tools/setup does) or start it")

    def _run(self, argv, **kwargs):
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, **kwargs)

    def _start_private(self):
        socket_path = os.path.join(os.path.abspath(self.dir), f".s.PGSQL.{PG_PORT}")
        if len(socket_path.encode()) > SOCKET_PATH_MAX:
            raise Failed(
                f"data directory path too long for PostgreSQL's socket ({socket_path}): "
                "use a shorter --data-dir"
            )
        os.makedirs(self.dir, exist_ok=True)
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            self.user = "postgres"
            shutil.chown(self.dir, user=self.user, group=self.user)
            if self._run(["test", "-w", self.dir]).returncode != 0:
                raise Failed(
                    f"PostgreSQL cannot run as root, and user {self.user} cannot reach "
                    f"{self.dir}: use a --data-dir it can reach (e.g. under /var/tmp), or "
                    "start the system PostgreSQL (tools/setup does)"
                )
        self.private = True
        self.description = f"a private PostgreSQL in {self.dir}"
        if not os.path.exists(os.path.join(self.pgdata, "PG_VERSION")):
            progress(f"creating {self.description}")
            result = self._run(
                [self._bin("initdb"), "-D", self.pgdata, "-U", PG_USER,
                 "--auth=trust", "-E", "UTF8", "--no-instructions"],
                timeout=120,
            )  # fmt: skip
            if result.returncode != 0:
                raise Failed(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        status = self._run([self._bin("pg_ctl"), "-D", self.pgdata, "status"])
        if status.returncode != 0:
            options = f"-c listen_addresses= -k {self.dir} -p {PG_PORT}"
            result = self._run(
                [self._bin("pg_ctl"), "-D", self.pgdata, "-l",
                 os.path.join(self.dir, "postgres.log"), "-o", options, "-w", "-t", "60", "start"],
                timeout=90,
                start_new_session=True,  # Ctrl-C in the terminal must not reach postgres
            )  # fmt: skip
            if result.returncode != 0:
                raise Failed(
                    f"PostgreSQL did not start: {result.stdout.strip()} {result.stderr.strip()} "
                    f"(see {self.dir}/postgres.log)"
                )
        import psycopg2

        base = f"host={self.dir} port={PG_PORT} user={PG_USER}"
        conn = psycopg2.connect(f"{base} dbname=postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": PG_DATABASE}
                )
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {PG_DATABASE}")
        finally:
            conn.close()
        self.dsn = f"{base} dbname={PG_DATABASE}"

    def stop(self):
        """Stop a private cluster this run started; the system one is left alone."""
        if not self.private:
            return
        result = self._run(
            [self._bin("pg_ctl"), "-D", self.pgdata, "-m", "fast", "-w", "stop"], timeout=60
        )
        if result.returncode != 0:
            progress(f"stopping PostgreSQL: {result.stderr.strip() or result.stdout.strip()}")

    def editor_token(self, name="run-local"):
        """A fresh sign-in token for the editor `name` (the schema made first; an old token revoked)."""
        from cutter.editors import Editors
        from cutter.jobs import JobError, Jobs

        jobs = Jobs(self.dsn)
        try:
            jobs.init_schema()
            editors = Editors(jobs.db)
            try:
                editors.revoke(name)
            except JobError:
                pass  # there was none yet
            return editors.add(name)
        finally:
            jobs.db.close()

    def job_counts(self):
        """{state: count} of the cut jobs there are, or None when they cannot be read."""
        import psycopg2

        from cutter.jobs import Jobs

        jobs = Jobs(self.dsn)
        try:
            return {str(state): n for state, n in jobs.counts().items() if n}
        except psycopg2.Error:
            return None
        finally:
            jobs.db.close()
