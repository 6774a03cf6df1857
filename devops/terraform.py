"""The Terraform CLI: init, plan, apply and the one ``output -json`` the tasks read.

Terraform runs non-interactively with the Settings' names and region (TF_VAR_*); everything else comes
from the environment as Terraform documents it (AWS_*, TF_DATA_DIR, TF_CLI_CONFIG_FILE), which is how
the sandbox points it at the emulator without touching the code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping

from devops.config import Settings
from devops.console import mask
from devops.errors import DevopsError

# Exit codes of `terraform plan -detailed-exitcode`.
PLAN_NO_CHANGES = 0
PLAN_HAS_CHANGES = 2


class TerraformError(DevopsError):
    pass


class Terraform:
    def __init__(
        self, settings: Settings, env: Mapping[str, str | None] | None = None, log: Path | None = None
    ):
        self.directory = settings.terraform_dir
        # ``env`` overrides the process environment; a None value removes the variable.
        merged = {**os.environ, **settings.terraform_variables(), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
                  **(env or {})}
        self.env = {key: value for key, value in merged.items() if value is not None}
        # Long commands (apply) write their full output here instead of the terminal.
        self.log = log

    def _binary(self) -> str:
        binary = shutil.which("terraform", path=self.env.get("PATH"))
        if not binary:
            raise TerraformError(
                "terraform not found on PATH: install Terraform, or run the tasks in the toolbox (./toolbox/inv)"
            )
        return binary

    def run(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        if not self.directory.is_dir():
            raise TerraformError(f"Terraform directory {self.directory} not found: check devops.terraform_dir")
        command = [self._binary(), f"-chdir={self.directory}", *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if self.log is not None:
            with self.log.open("a") as log:
                log.write(f"$ terraform {' '.join(args)}\n{mask(result.stdout)}{mask(result.stderr)}\n")
        if result.returncode not in ok_codes:
            raise TerraformError(f"terraform {args[0]} failed: {_error_summary(result.stderr or result.stdout)}")
        return result

    def init(self, backend_config: Mapping[str, str] | None = None, backend: bool = True) -> None:
        args = ["init", "-input=false", "-no-color"]
        if not backend:
            args.append("-backend=false")
        args += [f"-backend-config={key}={value}" for key, value in (backend_config or {}).items()]
        self.run(*args)

    def plan(
        self, variables: Mapping[str, Any] | None = None, out: Path | None = None, refresh: bool = True
    ) -> bool:
        """Run a plan; True when it has changes. With ``out``, the plan is saved for ``apply``."""
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", *_var_args(variables)]
        if out is not None:
            args.append(f"-out={out}")
        if not refresh:
            args.append("-refresh=false")
        result = self.run(*args, ok_codes=(PLAN_NO_CHANGES, PLAN_HAS_CHANGES))
        return result.returncode == PLAN_HAS_CHANGES

    def apply(self, variables: Mapping[str, Any] | None = None, plan_file: Path | None = None) -> None:
        """Apply a saved plan exactly, or (without one) the configuration with these variables."""
        if plan_file is not None:
            self.run("apply", "-input=false", "-no-color", str(plan_file))
        else:
            self.run("apply", "-input=false", "-no-color", "-auto-approve", *_var_args(variables))

    def outputs(self) -> dict[str, Any]:
        """All outputs in one call, as name -> value (empty when nothing was applied yet).

        Terraform does not keep null outputs in state, so the active-only outputs are absent in pilot
        light: read them with ``.get(name)``, which gives None.
        """
        result = self.run("output", "-json", "-no-color")
        try:
            raw = json.loads(result.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise TerraformError(f"terraform output -json returned invalid JSON ({exc})") from None
        return {name: entry.get("value") for name, entry in raw.items()}


def _var_args(variables: Mapping[str, Any] | None) -> list[str]:
    return [f"-var={name}={_hcl_value(value)}" for name, value in (variables or {}).items()]


def _hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error_summary(output: str) -> str:
    """The first 'Error: ...' line of Terraform's output (its diagnostics are boxed with │)."""
    lines = [line.strip(" │╷╵\t") for line in output.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("Error:"):
            detail = next((nxt for nxt in lines[index + 1 :] if nxt and not nxt.startswith("with ")), "")
            summary = line[len("Error:") :].strip()
            return mask(f"{summary}: {detail}" if detail and len(summary) < 80 else summary)
    tail = [line for line in lines if line]
    return mask(tail[-1] if tail else "no output")


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
