"""Start a throwaway PostgreSQL server from the Debian packages for a test session.

A real server, on 127.0.0.1 and a private socket directory, with fsync off
(the data directory is deleted afterwards), its data directory in memory
(``/dev/shm``) where the machine has one: every test copies a database of some
500 files and drops it afterwards, and on a disk busy with the other worker's
writes one copy took a second against 35-100 ms in memory. As root, initdb refuses to run,
so the server runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path:
        return path
    raise RuntimeError(
        f"PostgreSQL's {name} was not found: install the Debian package 'postgresql' "
        "(scripts/test does this)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _in_memory(need: int = 2 << 30) -> str | None:
    """``/dev/shm`` when it is a writable directory with ``need`` bytes free,
    else None (the system's temporary directory)."""
    shm = "/dev/shm"
    try:
        if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= need:
            return shm
    except OSError:
        pass
    return None


@dataclass
class PgServer:
    root: Path
    port: int
    user: str | None

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        full = list(cmd)
        if self.user:
            full = ["runuser", "-u", self.user, "--", *full]
        return subprocess.run(full, check=True, capture_output=True, text=True, timeout=120)

    @property
    def url(self) -> str:
        return self.url_for("kares_test")

    def url_for(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self._run(
            _bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"',
        )  # fmt: skip

    @classmethod
    def start(cls) -> PgServer:
        root = Path(tempfile.mkdtemp(prefix="kares-pg-", dir=_in_memory()))
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        srv = cls(root=root, port=_free_port(), user=user)
        data = root / "data"
        srv._run(
            _bin("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        opts = (
            f"-p {srv.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        srv._run(
            _bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                srv._run(
                    _bin("psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(srv.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    "CREATE DATABASE kares_test",
                )
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return srv

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
