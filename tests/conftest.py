"""Shared fixtures: one sandbox per test session (real PostgreSQL servers, a moto server, Terraform applied
once), and a Terraform CLI configuration that uses the machine's provider mirror when it has one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from devops.config import Settings
from devops.console import Console
from devops.sandbox import Sandbox

# Where machines without internet access keep a filesystem mirror of Terraform providers.
PROVIDER_MIRRORS = ("/opt/tf-plugins", "/usr/share/terraform/plugins", "/usr/local/share/terraform/plugins")


def pytest_configure(config: pytest.Config) -> None:
    _use_provider_mirror()


def _use_provider_mirror() -> None:
    """Point Terraform at a local provider mirror for this test run, if the machine carries one.

    Only tests (and CI) do this; the product's `terraform init` downloads providers as usual. An existing
    CLI config named by TF_CLI_CONFIG_FILE is left alone.
    """
    current = os.environ.get("TF_CLI_CONFIG_FILE")
    if current and Path(current).is_file():
        return
    candidates = [os.environ.get("TF_PROVIDER_MIRROR", ""), *PROVIDER_MIRRORS]
    mirror = next((path for path in candidates if path and Path(path, "registry.terraform.io").is_dir()), None)
    if mirror is None:
        return
    config = Path(tempfile.mkdtemp(prefix="devops-tfcli-")) / "cli.tfrc"
    config.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n')
    os.environ["TF_CLI_CONFIG_FILE"] = str(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` (the sandbox's own shutdown) run after everything that uses the sandbox."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def sandbox_settings():
    # Not under pytest's tmp_path: that is private to root, and the servers run as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="devops-sandbox-"))
    root.chmod(0o755)
    yield Settings.load({"sandbox_dir": str(root / "sandbox")}, environ={})
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox(sandbox_settings: Settings):
    box = Sandbox(sandbox_settings, Console())
    box.up()
    yield box
    box.down(quiet=True)


@pytest.fixture(scope="session")
def sandbox_state(sandbox: Sandbox) -> dict:
    return sandbox.load_state()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, sandbox_settings: Settings) -> dict[str, str]:
    """The process environment after `eval "$(inv sandbox.env)"`, for running tasks as subprocesses."""
    return {**sandbox.environment(), "INVOKE_DEVOPS_SANDBOX_DIR": str(sandbox_settings.sandbox_dir)}


@pytest.fixture
def neon(sandbox_env: dict[str, str]) -> str:
    """A URL to the Neon stand-in."""
    return sandbox_env["NEON_DATABASE_URL"]


@pytest.fixture
def rds(sandbox_env: dict[str, str]) -> str:
    """A URL to the RDS stand-in."""
    return sandbox_env["SANDBOX_RDS_URL"]
