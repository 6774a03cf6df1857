"""What several test modules share: running a task as a user would, and reading the bucket."""

from __future__ import annotations

import os
import pty
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from devops.config import REPO_ROOT

INV = [sys.executable, "-m", "invoke"]


def inv(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*INV, *args], env=env, capture_output=True, text=True, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def inv_after_eval(exports: str, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`inv ARGS` in a POSIX shell (started with ``env``) that first ran ``eval "$exports"``: e.g. the lines
    `inv sandbox.env` printed, as in a user's shell after ``eval "$(inv sandbox.env)"``."""
    return subprocess.run(["sh", "-c", 'eval "$1" && shift && exec "$@"', "sh", exports, *INV, *args], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, timeout=timeout)


def forget_syncs(sandbox, bucket: str) -> None:
    """Remove every dump and record from the bucket: for the divergence guard, no sync has happened yet."""
    s3 = sandbox.client("s3")
    for prefix in ("neon-dumps/", "rds-dumps/"):
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])


def s3_state(sandbox, bucket: str) -> dict:
    s3 = sandbox.client("s3")
    objects = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return {"objects": objects, "uploads": uploads}


def secrets_of(sandbox_env) -> list[str]:
    return [unquote(urlsplit(sandbox_env[name]).password) for name in ("NEON_DATABASE_URL", "SANDBOX_RDS_URL")]


def assert_no_secret(result: subprocess.CompletedProcess, sandbox_env) -> None:
    for secret in secrets_of(sandbox_env):
        assert secret not in result.stdout + result.stderr


# The Terraform outputs that only the active mode sets.
ACTIVE_OUTPUTS = ("ecs_cluster_name", "backend_service_name", "frontend_service_name", "prometheus_service_name",
                  "grafana_service_name", "alb_dns_name", "cloudfront_distribution_id", "service_discovery_namespace")


# The run log's path at the end of an [ERROR] line (devops/runlog.py).
LOG_SUFFIX = re.compile(r" \(log: (?P<path>\S+\.log)\)$")


def without_log(line: str) -> str:
    """An [ERROR] line without the run log's path it ends with."""
    return LOG_SUFFIX.sub("", line)


def log_of(line: str) -> Path:
    found = LOG_SUFFIX.search(line) or re.search(r"the traceback is in (?P<path>\S+\.log)$", line)
    assert found, f"no log path at the end of: {line}"
    path = Path(found.group("path"))
    return path if path.is_absolute() else REPO_ROOT / path


def assert_private(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)


def redirect(env: dict[str, str], neon: str | None = None, rds: str | None = None) -> dict[str, str]:
    """A task's environment with Neon and/or RDS at the given URLs (servers of server_of_major)."""
    env = dict(env)
    if neon:
        env["NEON_DATABASE_URL"] = neon
    if rds:
        parts = urlsplit(rds)
        env["INVOKE_DEVOPS_RDS_ADDRESS"] = f"{parts.hostname}:{parts.port}"
    return env


def on_a_terminal(env: dict, *args: str, before_answer=None, answer: str = "yes") -> tuple[int, str]:
    """``inv ARGS`` with a pseudo-terminal for stdin and output; at the question, ``before_answer()``, then
    ``answer``. Its exit code and everything it printed."""
    main, child = pty.openpty()
    process = subprocess.Popen([*INV, *args], env={**env, "NO_COLOR": "1"}, cwd=REPO_ROOT,
                               stdin=child, stdout=child, stderr=child)
    os.close(child)
    output, answered = b"", False
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the task closed the terminal
            break
        if not data:
            break
        output += data
        if not answered and b"Type 'yes' to overwrite" in output:
            if before_answer:
                before_answer()
            os.write(main, answer.encode() + b"\n")
            answered = True
    os.close(main)
    return process.wait(timeout=60), output.decode(errors="replace").replace("\r\n", "\n")
