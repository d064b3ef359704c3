"""A throwaway PostgreSQL cluster from the machine's PostgreSQL binaries.

`initdb` refuses to run as root, so when we are root the data directory belongs to the
`postgres` user and the server runs as that user; it then lives in a directory of its own
under the system temp dir (which `postgres` can reach, unlike a root-only work dir) and is
removed on stop. The cluster trusts local connections and skips fsync: it is for development
and tests only. Commits stay synchronous, and the server is stopped with a fast shutdown (a
checkpoint), so a transaction that committed survives `pause()`: the tests that stop Postgres
mid-run check that nothing acknowledged is lost, and must see what production would.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from opspawn.dev.ports import free_port
from opspawn.dev.processes import ManagedProcess, as_user

DATABASE = "opspawn"
USER = "opspawn"


def postgres_bindir() -> Path:
    """`$OPSPAWN_PG_BINDIR`, else the newest /usr/lib/postgresql/<major>/bin, else PATH."""
    if override := os.environ.get("OPSPAWN_PG_BINDIR"):
        return Path(override)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found is None:
        raise FileNotFoundError(
            "PostgreSQL binaries not found: install postgresql or set OPSPAWN_PG_BINDIR"
        )
    return Path(found).parent


def _as_root() -> bool:
    return os.geteuid() == 0


@dataclass
class Postgres:
    """A PostgreSQL server under `workdir` on a free port, with database and role `opspawn`."""

    workdir: Path
    port: int = 0
    process: ManagedProcess | None = None
    data_root: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """libpq connection string."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def _user(self) -> str | None:
        return "postgres" if _as_root() else None

    def _run(self, argv: list[str]) -> None:
        completed = subprocess.run(
            argv, capture_output=True, text=True, check=False, **as_user(self._user)
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{completed.stdout}{completed.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        bindir = postgres_bindir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.data_root is not None:
            pass  # started before and paused: the same data again
        elif self._user is not None:
            self.data_root = Path(tempfile.mkdtemp(prefix="opspawn-postgres-"))
            shutil.chown(self.data_root, self._user)
        else:
            self.data_root = self.workdir
        data = self.data_root / "data"
        sockets = self.data_root / "sockets"
        sockets.mkdir(exist_ok=True)
        if self._user is not None:
            shutil.chown(sockets, self._user)
        if not (data / "PG_VERSION").exists():
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C",
                ]
            )
        self.port = self.port or free_port()
        self.process = ManagedProcess(
            name="postgres",
            argv=[
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            log_path=self.workdir / "postgres.log",
            user=self._user,
            shutdown_signal=signal.SIGINT,  # fast shutdown: end the sessions, then checkpoint
        )
        self.process.start()
        psql = str(bindir / "psql")
        base = [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres", "-tAc"]

        def accepting() -> bool:
            return (
                subprocess.run([*base, "select 1"], capture_output=True, check=False).returncode
                == 0
            )

        self.process.wait_ready(accepting, timeout)
        exists = subprocess.run(
            [*base, f"select 1 from pg_database where datname = '{DATABASE}'"],  # noqa: S608 - constant
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run([*base, f"create database {DATABASE}"], capture_output=True, check=True)

    def pause(self) -> None:
        """Stop the server but keep its data (and port): `start()` brings it back as it was."""
        if self.process is not None:
            self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self.data_root is not None and self.data_root != self.workdir:
            shutil.rmtree(self.data_root, ignore_errors=True)
