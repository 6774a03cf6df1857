"""The Terraform code itself: formatted, valid, and free of anything that pins it to the emulator."""

import os
import re
import subprocess

from devops.config import Settings

TF_DIR = Settings.load({}, environ={}).terraform_dir


def test_fmt_is_clean():
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff"], cwd=TF_DIR.parent.parent,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_passes(tmp_path):
    env = {**os.environ, "TF_DATA_DIR": str(tmp_path / "tf")}
    init = subprocess.run(["terraform", f"-chdir={TF_DIR}", "init", "-backend=false", "-input=false", "-no-color"],
                          env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    result = subprocess.run(["terraform", f"-chdir={TF_DIR}", "validate", "-no-color"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_has_no_endpoints_or_mirrors_and_a_partial_s3_backend():
    code = "\n".join(path.read_text() for path in TF_DIR.glob("*.tf"))
    assert not re.search(r"127\.0\.0\.1|localhost|endpoints\s*\{|skip_credentials_validation|filesystem_mirror", code)
    assert re.search(r'backend\s+"s3"\s*\{\s*\}', code)
    assert (TF_DIR / "backend.hcl.example").is_file()


# Always-on resources that a plan may replace: the DB parameter group is one per major (its family), created
# before the instance moves to the next one on an upgrade, and holds no data.
REPLACEABLE = {"aws_db_parameter_group.this"}


def test_always_on_resources_are_protected_from_destroy():
    always_on = {"network.tf", "database.tf", "storage.tf", "registry.tf"}
    for name in always_on:
        text = (TF_DIR / name).read_text()
        resources = re.findall(r'^resource\s+"([^"]+)"\s+"([^"]+)"', text, flags=re.M)
        blocks = re.split(r'^resource\s+"', text, flags=re.M)[1:]
        assert resources, name
        for (kind, label), block in zip(resources, blocks):
            if f"{kind}.{label}" in REPLACEABLE:
                assert "create_before_destroy = true" in block, f"{kind}.{label} in {name}"
                continue
            assert "prevent_destroy = true" in block, f"{kind}.{label} in {name} lacks prevent_destroy"
