"""PostgreSQL for the tests: the shared server's URL (127.0.0.1:5432, OP25B_TEST_POSTGRES_URL),
and a private cluster that a test may stop and start (the shared server must never be stopped).
The private cluster runs Debian's server binaries as the `postgres` user and is stopped with
`pg_ctl stop` on its own data directory, that is by the postmaster's PID file.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_tcp_port

PG_ADMIN_URL = os.environ.get("OP25B_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(f"PostgreSQL server binary {name} not found (apt-get install postgresql)")
    return found[-1]


class PrivatePostgres:
    def __init__(self) -> None:
        # Outside pytest's 0700 tmp tree: the postgres user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="op25b-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = free_tcp_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.dir, "postgres")
        self._as_postgres(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
