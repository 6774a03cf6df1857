"""Terraform's providers from a local filesystem mirror, for machines that cannot reach the registry: the
tests, the demo and the benches (the tasks' `terraform init` downloads providers as usual)."""

from __future__ import annotations

import os
from pathlib import Path


def use_provider_mirror(directory: Path, environ: dict[str, str] | None = None,
                        candidates: tuple[str, ...] = ()) -> str | None:
    """Point Terraform at a local provider mirror when one is named: TF_PROVIDER_MIRROR, else the first of
    ``candidates`` (the tests pass the places machines without internet keep one). Writes a CLI config into
    ``directory`` and sets TF_CLI_CONFIG_FILE in ``environ`` (os.environ by default). Returns the mirror, or
    None when there is none.

    Only the tests and the sandbox demo do this; the tasks' `terraform init` downloads providers as usual.
    An existing CLI config named by TF_CLI_CONFIG_FILE is left alone.
    """
    env = os.environ if environ is None else environ
    current = env.get("TF_CLI_CONFIG_FILE")
    if current and Path(current).is_file():
        return None
    mirror = next((path for path in (env.get("TF_PROVIDER_MIRROR", ""), *candidates)
                   if path and Path(path, "registry.terraform.io").is_dir()), None)
    if mirror is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "cli.tfrc"
    config.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n')
    env["TF_CLI_CONFIG_FILE"] = str(config)
    return mirror
