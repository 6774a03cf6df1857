"""The sandbox's PostgreSQL: finding a major's server binaries, and one stand-in server (a cluster of
its own, on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote
from typing import Any

import psycopg2

from devops.errors import DevopsError
from devops.files import write_private
from devops.masking import last_line

HOST = "127.0.0.1"
# Throwaway data: no crash safety needed, and restores run several times faster without fsync.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/opt/postgresql/*/bin", "/usr/pgsql-*/bin",
                "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin")


def find_pg_bin(major: str, configured: str = "", search: tuple[str, ...] = PG_BIN_GLOBS,
                path: str | None = None) -> Path:
    """The directory of PostgreSQL ``major``'s server binaries (initdb, pg_ctl, postgres).

    ``configured`` (devops.sandbox_pg_bin) is a directory, or a pattern with {major}; otherwise the usual
    places are searched, then PATH.
    """
    if configured:
        candidate = Path(configured.replace("{major}", major))
        if not (candidate / "initdb").exists():
            raise DevopsError(f"no initdb in {candidate} (devops.sandbox_pg_bin): point it at PostgreSQL's bin "
                              "directory, or a pattern such as /usr/lib/postgresql/{major}/bin")
        found_major = server_major(candidate)
        if found_major != major:
            raise DevopsError(f"{candidate} holds PostgreSQL {found_major}, not {major} (devops.sandbox_pg_bin): "
                              "use a pattern with {major}, or set the stand-in's major to it")
        return candidate
    candidates = [Path(p) for pattern in search for p in glob.glob(pattern) if (Path(p) / "initdb").exists()]
    initdb = shutil.which("initdb", path=path)
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    found = {server_major(candidate): candidate for candidate in sorted(set(candidates), key=str, reverse=True)}
    if major in found:
        return found[major]
    have = f" (found: {', '.join(sorted(found, key=int))})" if found else ""
    raise DevopsError(
        f"no PostgreSQL {major} server binaries (initdb, pg_ctl, postgres){have}: install them "
        f"(Debian/Ubuntu: apt-get install postgresql-{major}; macOS: brew install postgresql@{major}), "
        "set INVOKE_DEVOPS_SANDBOX_PG_BIN to their directory, or pick another major with "
        "INVOKE_DEVOPS_SANDBOX_NEON_MAJOR / INVOKE_DEVOPS_SANDBOX_RDS_MAJOR (or use the toolbox: ./toolbox/inv)"
    )


def server_version(bin_dir: Path) -> str:
    """The version of the server binaries in ``bin_dir`` ("postgres (PostgreSQL) 15.18 (Debian ...)" -> "15.18"),
    or "" when there is none to ask."""
    try:
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True).stdout
    except OSError:
        return ""
    found = re.search(r"\) (\d+(?:\.\d+)?)", out)
    return found.group(1) if found else ""


def server_major(bin_dir: Path) -> str:
    """The major of the server binaries in ``bin_dir`` ("15"), or "?"."""
    return server_version(bin_dir).split(".")[0] or "?"


@dataclasses.dataclass
class Server:
    """One PostgreSQL stand-in and the application role/database it serves."""

    name: str
    port: int
    superuser_password: str
    version: str = ""
    user: str = ""
    password: str = ""
    database: str = ""
    ca: str = ""  # the CA file that verifies its certificate; "" for a server without TLS

    def url(self, verified: bool = False) -> str:
        """Its URL; ``verified``: with sslmode=verify-full against its CA (what a task does by default)."""
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        tls = f"?sslmode=verify-full&sslrootcert={quote(self.ca)}" if verified and self.ca else ""
        return f"postgresql://{user}:{password}@{HOST}:{self.port}/{self.database}{tls}"

    def connect(self, as_superuser: bool = False, database: str | None = None) -> Any:
        user, password = ("postgres", self.superuser_password) if as_superuser else (self.user, self.password)
        tls = {"sslmode": "verify-full", "sslrootcert": self.ca} if self.ca else {}
        return psycopg2.connect(
            host=HOST, port=self.port, user=user, password=password,
            dbname=database or ("postgres" if as_superuser else self.database), connect_timeout=5, **tls,
        )


class PostgresCluster:
    """initdb / pg_ctl for one data directory, run as an unprivileged user (initdb refuses root)."""

    # A library every start preloads into the server's processes when the cluster's folder holds it (the Neon
    # stand-in's size limit: neon_size_limit.py).
    PRELOAD = "preload.so"

    def __init__(self, bin_dir: Path, root: Path, run_as: str | None):
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.run_as = run_as

    def _run(self, tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / tool), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**os.environ, **env} if env else None)

    def init(self, server: Server, limits: dict[str, int] | None = None,
             tls: tuple[Path, Path] | None = None) -> None:
        """A new cluster for ``server``, with SERVER_SETTINGS and ``limits`` (max_connections, ...). With
        ``tls`` (certificate, key), it accepts TLS connections only, as Neon and RDS do (pg_hba's hostssl
        lines alone); without, plaintext only (a server that offers no TLS)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        pwfile = self.root / "pwfile"
        write_private(pwfile, server.superuser_password + "\n")
        if self.run_as:
            shutil.chown(self.root, self.run_as)
            shutil.chown(pwfile, self.run_as)
        try:
            # The password goes through a file, never argv.
            result = self._run("initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}",
                               "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C")
        finally:
            pwfile.unlink()
        if result.returncode != 0:
            raise DevopsError(f"initdb for the {server.name} stand-in failed: {last_line(result.stderr, 'no output')}")
        settings = {**SERVER_SETTINGS, **{name: str(value) for name, value in (limits or {}).items()},
                    "port": str(server.port)}
        if tls:
            settings.update(ssl="on", ssl_cert_file=str(tls[0]), ssl_key_file=str(tls[1]))
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# sandbox\n" + "".join(f"{k} = '{v}'\n" for k, v in settings.items()))
        kind = "hostssl" if tls else "hostnossl"
        (self.data / "pg_hba.conf").write_text(
            ("# sandbox: TLS only, as Neon and RDS\n" if tls else "# sandbox: a server without TLS\n")
            + "".join(f"{kind} all all {net} scram-sha-256\n" for net in ("127.0.0.1/32", "::1/128")))

    def start(self) -> None:
        preload = self.root / self.PRELOAD
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start",
                           env={"LD_PRELOAD": str(preload)} if preload.exists() else None)
        if result.returncode != 0:
            said = last_line(result.stderr or result.stdout, "no output")
            raise DevopsError(f"PostgreSQL in {self.root} did not start: {said} (see {self.log})")

    def reload(self) -> None:
        """Read the configuration and the certificate files again (a new certificate needs no restart)."""
        self._run("pg_ctl", "-D", str(self.data), "reload")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; mode "immediate" is a crash (tests use it to kill a server mid-sync)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def version(self) -> str:
        return server_version(self.bin_dir) or "unknown"


def unprivileged_user() -> str | None:
    """None when we are not root; otherwise the system user to run PostgreSQL as."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise DevopsError("PostgreSQL refuses to run as root and there is no 'postgres' user: "
                          "run the sandbox as a regular user (or in the toolbox)") from None
    return "postgres"
