"""Files that hold secrets are private from their first byte, and the sandbox's exports work for a user's
own AWS tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.files import write_private
from devops.sandbox import Sandbox


def test_write_private_replaces_a_leftover_with_an_owner_only_file(tmp_path):
    path = tmp_path / "pwfile"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "secret\n")
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == "secret\n"


def test_the_sandbox_state_is_owner_only_even_over_a_leftover_temp_file(tmp_path):
    box = Sandbox(Settings.load({"sandbox_dir": str(tmp_path / "sandbox")}, environ={}), Console())
    box.dir.mkdir()
    leftover = box.state_file.path.with_suffix(".tmp")  # from a run that was killed between write and rename
    leftover.write_text("{}")
    leftover.chmod(0o644)
    box.state_file.save({"neon": {"superuser_password": "pw"}})
    assert box.state_file.path.stat().st_mode & 0o777 == 0o600
    assert json.loads(box.state_file.path.read_text())["neon"]["superuser_password"] == "pw"


def test_a_test_session_removes_its_terraform_cli_folder(tmp_path):
    # A machine with a provider mirror: the session writes its CLI configuration into a mkdtemp folder.
    (tmp_path / "mirror" / "registry.terraform.io").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TF_CLI_CONFIG_FILE"}
    env.update(TMPDIR=str(tmp_path / "tmp"), TF_PROVIDER_MIRROR=str(tmp_path / "mirror"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_console.py::test_cell_and_mode_of"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not list((tmp_path / "tmp").glob("devops-tfcli-*"))


def test_a_users_own_boto3_works_after_sandbox_env(sandbox):
    # boto3 and AWS CLI v1 read AWS_DEFAULT_REGION only; RDS (unlike S3) has no global default region.
    script = ('eval "$1" && "$2" -c "import boto3; '
              "print(len(boto3.client('rds').describe_db_instances()['DBInstances']))\"")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    result = subprocess.run(["sh", "-c", script, "sh", "\n".join(sandbox.env_lines()), sys.executable], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-1000:]
    assert int(result.stdout) >= 1
