"""A throwaway PostgreSQL server for tests: the system's binaries, a temp dir, a port.

The binaries come from PATH or Debian's /usr/lib/postgresql/<version>/bin (package
`postgresql`). postgres refuses to run as root, so as root the server runs as the
`postgres` system user the package creates. It listens on a free port of 127.0.0.1
(and a unix socket in its temp dir), trusts local connections, and skips fsync: a test
server, never a store to keep.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genreg.adapters.commands.serve import free_port

DEBIAN_ROOT = Path("/usr/lib/postgresql")  # <version>/bin/pg_ctl
SUPERUSER = "postgres"


class PgServerError(RuntimeError):
    """PostgreSQL could not be set up; the message says what failed and its log."""


def find_bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: PATH first, then Debian's newest version."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = [p for p in DEBIAN_ROOT.glob("*/bin") if (p / "pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass
class PgServer:
    """A running server; `url(db)` is a SQLAlchemy / Optuna / MLflow URL for it."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None  # system user the server runs as (None: this user)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; returns its URL."""
        import psycopg

        # autocommit: CREATE DATABASE cannot run inside a transaction
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        try:
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise PgServerError(
                f"{' '.join(command)} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}\n{log[-2000:]}"
            )


def start_server(bin_dir: Path) -> PgServer:
    """initdb a temp cluster (trust auth) and start it on a free 127.0.0.1 port."""
    run_as = _server_user()
    # not under pytest's tmp dir: that is private to root, and postgres must enter it
    root = Path(tempfile.mkdtemp(prefix="genreg-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PgServer(bin_dir, root, free_port(), run_as)
    try:
        server._pg(
            "initdb",
            "-D",
            str(server.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-h 127.0.0.1 -p {server.port} -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        server._pg(
            "pg_ctl",
            "start",
            "-D",
            str(server.data_dir),
            "-l",
            str(server.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PgServerError(
            "running as root, and postgres refuses root: no `postgres` system user "
            "to run it as (Debian's postgresql package creates one)"
        ) from None
    return SUPERUSER
