"""Tests room: a throwaway PostgreSQL server (Debian's ``postgresql`` package: initdb + pg_ctl) for the database tests.

``PostgresServer.start()`` makes a cluster in a fresh temporary folder, starts it on a free port of 127.0.0.1
(its socket in that folder too) and ``stop()`` stops it and removes the folder. ``initdb`` refuses to run as
root, so under root the server runs as the unprivileged ``postgres`` system user (``runuser``). Authentication
is ``trust`` for the local superuser ``fanout``; nothing listens beyond 127.0.0.1. Durability settings are off
(fsync, synchronous_commit, full_page_writes): the cluster lives for one test session.

``unavailable()`` says why no server can be started here (the tests skip with that reason) or returns None.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "fanout"
SYSTEM_USER = "postgres"  # made by Debian's postgresql package
INSTALL_HINT = "apt-get install postgresql (the Debian package; `bash .ci/run` installs it)"


def _bindir() -> Path | None:
    """The folder holding initdb / pg_ctl: PATH first, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _run_as() -> list[str] | None:
    """The command prefix that runs the server unprivileged ([] when we are not root), None if impossible."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    return [runuser, "-u", SYSTEM_USER, "--"] if runuser else None


def unavailable() -> str | None:
    """Why a throwaway server cannot be started on this machine, or None when it can."""
    if _bindir() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) not installed: {INSTALL_HINT}"
    if _run_as() is None:
        return f"running as root but there is no '{SYSTEM_USER}' system user (and runuser) to run initdb as"
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        return "psycopg is not installed: pip install -e '.[dev]' (or '.[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throwaway cluster; ``url(name)`` is the SQLAlchemy URL of database ``name`` on it."""

    def __init__(self, port: int = 0) -> None:
        self.folder: Path | None = None
        self.port = port  # 0: a free one
        self._prefix: list[str] = []
        self._bindir: Path | None = None

    @property
    def data(self) -> Path:
        assert self.folder is not None
        return self.folder / "data"

    def _cmd(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert self._bindir is not None
        return subprocess.run([*self._prefix, str(self._bindir / tool), *args], check=check, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, cwd=self.folder, timeout=120)

    def start(self) -> PostgresServer:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self._bindir, self._prefix = _bindir(), _run_as() or []
        self.folder = Path(tempfile.mkdtemp(prefix="fanout-pg-"))
        if self._prefix:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        try:
            self._cmd("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale",
                      "--no-sync")
            wanted = self.port
            for _attempt in range(1 if wanted else 5):  # a port free when picked may be taken meanwhile: retry
                self.port = wanted or _free_port()
                options = (f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off -c synchronous_commit=off "
                           f"-c full_page_writes=off -c max_connections=200")
                done = self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
                                 "-t", "60", "-o", options, "start", check=False)
                if done.returncode == 0:
                    return self
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def log_tail(self, lines: int = 20) -> str:
        log = self.folder / "server.log" if self.folder else None
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE / DROP DATABASE) as the superuser."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.folder is None:
            return
        if (self.data / "postmaster.pid").exists():
            self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
