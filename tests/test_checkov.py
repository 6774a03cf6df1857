"""The environment's Terraform under a policy scanner: every checkov check passes, or is skipped on its
resource by a `#checkov:skip=CKV_...: <reason>` comment. No config file skips anything."""

import json
import re
import shutil
import subprocess

from devops.config import REPO_ROOT, Settings

TF_DIR = Settings.load({}, environ={}).terraform_dir
PIN = re.search(r"^checkov==(\S+)$", (REPO_ROOT / "requirements-checkov.txt").read_text(), flags=re.M).group(1)


def checkov() -> str:
    # checkov lives in a venv of its own (its pins conflict with requirements.txt): on PATH in the dev image,
    # in .venv-checkov after scripts/bootstrap on a host.
    local = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    found = str(local) if local.is_file() else shutil.which("checkov")
    assert found, "checkov not found: run scripts/bootstrap (it installs requirements-checkov.txt in .venv-checkov)"
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout.strip()
    assert version == PIN, f"checkov {version} at {found}, but requirements-checkov.txt pins {PIN}"
    return found


def test_every_check_passes_or_is_skipped_with_a_reason_on_its_resource(tmp_path):
    configs = [p for d in (REPO_ROOT, TF_DIR) for p in d.glob(".checkov.y*ml")]
    assert not configs, f"skips belong on the resource, not in a config file: {configs}"
    # Run from an empty directory so that no .checkov.yaml is picked up; --skip-download: offline.
    result = subprocess.run([checkov(), "-d", str(TF_DIR), "--framework", "terraform", "--output", "json",
                             "--skip-download"], cwd=tmp_path, capture_output=True, text=True)
    report = json.loads(result.stdout)
    summary, results = report["summary"], report["results"]
    assert summary["parsing_errors"] == 0, result.stdout
    assert summary["passed"] > 0
    failed = [f"{c['check_id']} on {c['resource']} ({c['file_path'].lstrip('/')}:{c['file_line_range'][0]}): "
              f"{c['check_name']}" for c in results["failed_checks"]]
    assert not failed, ("fix these or add '#checkov:skip=CKV_...: <reason>' to the resource:\n  "
                        + "\n  ".join(failed))
    # A skip says why: the cost or the dev trade-off, in words a reviewer can judge.
    unexplained = [f"{c['check_id']} on {c['resource']}" for c in results.get("skipped_checks", [])
                   if len((c.get("check_result", {}).get("suppress_comment") or "").split()) < 5]
    assert not unexplained, f"skips without a reason: {unexplained}"
    assert result.returncode == 0, result.stderr

