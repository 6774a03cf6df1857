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
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from devops import aws, credentials, runlog
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.files import write_private
from devops.masking import mask
from devops.progress import Ticker

# Exit codes of `terraform plan -detailed-exitcode`.
PLAN_NO_CHANGES = 0
PLAN_HAS_CHANGES = 2


class TerraformError(DevopsError):
    pass


class Terraform:
    def __init__(
        self, settings: Settings, env: Mapping[str, str | None] | None = None, log: Path | None = None
    ):
        self.settings = settings
        self.directory = settings.terraform_dir
        # ``env`` overrides the process environment; a None value removes the variable.
        merged = {**os.environ, **settings.terraform_variables(), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
                  **(env or {})}
        self.env = {key: value for key, value in merged.items() if value is not None}
        # The task's own identity, unless ``env`` brings one (the sandbox's own apply, with the emulator's keys).
        self._own_identity = not (env or {}).get("AWS_ACCESS_KEY_ID")
        # Long commands (apply) write their full output here instead of the terminal.
        self.log = log

    def _command(self, *args: str) -> list[str]:
        """terraform -chdir=<the environment> ARGS, or one clear line when either is missing (or the region is
        unknown: Terraform's AWS calls take the tasks' region, TF_VAR_aws_region)."""
        aws.require_region(self.settings)
        if not self.directory.is_dir():
            raise TerraformError(f"Terraform directory {self.directory} not found: check devops.terraform_dir")
        binary = shutil.which("terraform", path=self.env.get("PATH"))
        if not binary:
            raise TerraformError(
                "terraform not found on PATH: install Terraform, or run the tasks in the toolbox (./toolbox/inv)"
            )
        return [binary, f"-chdir={self.directory}", *args]

    def _process_env(self) -> dict[str, str]:
        """The environment of a command: ``env``, with the task's AWS identity served to Terraform
        (devops/credentials.py) in place of any profile or keys."""
        if not self._own_identity:
            return self.env
        merged = {**self.env, **credentials.terraform_environment(self.settings)}
        return {key: value for key, value in merged.items() if value is not None}

    def run(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        command = self._command(*args)
        result = subprocess.run(command, env=self._process_env(), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        # `output -json` and `show -json` print data the tasks read (outputs may hold sensitive values): not logged.
        stdout = f"({len(result.stdout)} characters of JSON)\n" if args[0] in ("output", "show") else result.stdout
        self._log(args, result.returncode, stdout + result.stderr)
        if result.returncode not in ok_codes:
            raise TerraformError(f"terraform {args[0]} failed: {_error_summary(result.stderr or result.stdout)}")
        return result

    def _log(self, args: tuple[str, ...] | list[str], code: int, text: str) -> None:
        """Terraform's whole output into the run log (and the sandbox's terraform.log), masked."""
        runlog.section(f"terraform {' '.join(args)} (exit {code})", text or "(no output)")
        if self.log is not None:
            with self.log.open("a") as log:
                log.write(f"$ terraform {' '.join(args)}\n{mask(text)}\n")

    def stream(self, *args: str, ok_codes: tuple[int, ...] = (0,),
               on_message: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Run a command with ``-json`` and hand each of its messages to ``on_message`` as it comes (plan and
        apply take minutes: this is where their progress comes from). Returns the exit code."""
        command = self._command(args[0], "-json", *args[1:])  # flags before a plan file
        human: list[str] = []
        errors: list[str] = []
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(command, env=self._process_env(), stdout=subprocess.PIPE, stderr=err, text=True,
                                    stdin=subprocess.DEVNULL)
            try:
                for line in proc.stdout:
                    message = _message(line)
                    human.append(_human(message))
                    if message.get("type") == "diagnostic" and message.get("@level") == "error":
                        errors.append(_diagnostic(message))
                    if on_message is not None:
                        on_message(message)
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        self._log(args, proc.returncode, "\n".join(human) + "\n" + stderr)
        if code not in ok_codes:
            raise TerraformError(f"terraform {args[0]} failed: {errors[0] if errors else _error_summary(stderr)}")
        return code

    def init(self, backend_config: Mapping[str, str] | None = None, backend: bool = True) -> None:
        args = ["init", "-input=false", "-no-color"]
        if not backend:
            args.append("-backend=false")
        args += [f"-backend-config={key}={value}" for key, value in (backend_config or {}).items()]
        self.run(*args)

    def plan(
        self, variables: Mapping[str, Any] | None = None, out: Path | None = None, refresh: bool = True,
        progress: Callable[[dict[str, Any]], None] | None = None, lock: bool = True,
    ) -> bool:
        """Run a plan; True when it has changes. With ``out``, the plan is saved for ``apply``. ``lock=False``
        for a read-only look (validate's drift check) that never waits for, or blocks, an apply's lock."""
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", *_var_args(variables)]
        if not lock:
            args.append("-lock=false")
        if out is not None:
            args.append(f"-out={out}")
        if not refresh:
            args.append("-refresh=false")
        code = self.stream(*args, ok_codes=(PLAN_NO_CHANGES, PLAN_HAS_CHANGES), on_message=progress)
        return code == PLAN_HAS_CHANGES

    def apply(self, variables: Mapping[str, Any] | None = None, plan_file: Path | None = None,
              progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Apply a saved plan exactly, or (without one) the configuration with these variables.
        ``progress`` receives each of Terraform's messages (see ApplyProgress)."""
        if plan_file is not None:
            self.stream("apply", "-input=false", "-no-color", str(plan_file), on_message=progress)
        else:
            self.stream("apply", "-input=false", "-no-color", "-auto-approve", *_var_args(variables),
                        on_message=progress)

    def outputs(self, s3: Any = None) -> dict[str, Any]:
        """All outputs in one call, as name -> value (empty when nothing was applied yet).

        Terraform does not keep null outputs in state, so the active-only outputs are absent in pilot
        light: read them with ``.get(name)``, which gives None.

        ``s3``: a boto3 S3 client with the caller's credentials, to reuse the outputs read last time while the
        state object's ETag is unchanged (one HEAD instead of a Terraform process; see OutputsCache).
        """
        # A task run --on ecs has no Terraform state: the runner passes the outputs it needs (no secret in them).
        passed = os.environ.get("DEVOPS_TERRAFORM_OUTPUTS")
        if passed:
            return json.loads(passed)
        cache = OutputsCache.of(self, s3) if s3 is not None else None
        if cache is not None and (cached := cache.read()) is not None:
            runlog.section("terraform output -json", f"not run: state {cache.location} unchanged (ETag {cache.etag})")
            return cached
        result = self.run("output", "-json", "-no-color")
        try:
            raw = json.loads(result.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise TerraformError(f"terraform output -json returned invalid JSON ({exc})") from None
        outputs = {name: entry.get("value") for name, entry in raw.items()}
        # A sensitive output (none today: names, ARNs, endpoints) never goes to a file.
        if cache is not None and not any(entry.get("sensitive") for entry in raw.values()):
            cache.write(outputs)
        return outputs

    def last_outputs(self) -> dict[str, Any] | None:
        """The outputs as they were read last time, not checked against the state (no request): what to start
        work with while outputs() makes sure. None when there is no cache (or the state was never read)."""
        passed = os.environ.get("DEVOPS_TERRAFORM_OUTPUTS")
        if passed:
            return json.loads(passed)
        try:
            return json.loads((self.data_dir() / OutputsCache.FILE).read_text()).get("outputs") or None
        except (OSError, ValueError, AttributeError):
            return None

    def data_dir(self) -> Path:
        """Terraform's working data (TF_DATA_DIR, relative to the configuration's folder; else .terraform)."""
        return self.directory / self.env.get("TF_DATA_DIR", ".terraform")


class OutputsCache:
    """The outputs of `terraform output -json`, kept while the state does not change.

    The state is one object in the S3 backend; every write of it (an apply) changes its ETag. So the
    outputs read at one ETag hold until the ETag changes, and one HEAD (about 10 ms) replaces a Terraform
    process (0.6 s or more). The file sits in Terraform's data dir, next to the backend settings it
    depends on, mode 0600; it holds the bucket, the key, the ETag and the outputs (names, ARNs, endpoints:
    no secret, and a sensitive output is never written). Anything unusual (another backend, a backend with
    credentials or an endpoint of its own, a failed HEAD) means no cache: Terraform runs as before.
    """

    FILE = "devops-outputs.json"
    # Backend settings the HEAD can honour with the caller's own session; any other one (credentials, a
    # role, endpoints, SSE-C keys) makes Terraform's own read the only right one.
    PLAIN_SETTINGS = {"bucket", "key", "region", "encrypt", "kms_key_id", "workspace_key_prefix", "use_lockfile",
                      "dynamodb_table", "acl", "use_path_style", "force_path_style"}

    def __init__(self, path: Path, bucket: str, key: str, etag: str):
        self.path, self.bucket, self.key, self.etag = path, bucket, key, etag

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def of(cls, terraform: Terraform, s3: Any) -> OutputsCache | None:
        """The cache of this Terraform's state, with the state's current ETag; None when there is none to use."""
        data_dir = terraform.data_dir()
        try:
            backend = json.loads((data_dir / "terraform.tfstate").read_text()).get("backend") or {}
        except (OSError, ValueError):
            return None
        config = {name: value for name, value in (backend.get("config") or {}).items() if value not in (None, False, "")}
        if backend.get("type") != "s3" or not {"bucket", "key"} <= config.keys() or config.keys() - cls.PLAIN_SETTINGS:
            return None
        workspace = terraform.env.get("TF_WORKSPACE") or _read(data_dir / "environment") or "default"
        key = config["key"] if workspace == "default" else \
            f"{config.get('workspace_key_prefix', 'env:')}/{workspace}/{config['key']}"
        try:
            etag = s3.head_object(Bucket=config["bucket"], Key=key)["ETag"]
        except aws.ForeignAnswer:
            raise  # Terraform's read would meet the same endpoint, and say so less clearly
        except Exception:  # noqa: BLE001 - no state yet, no access, no network: Terraform's read says which
            return None
        return cls(data_dir / cls.FILE, config["bucket"], key, etag)

    def read(self) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if [entry.get("bucket"), entry.get("key"), entry.get("etag")] != [self.bucket, self.key, self.etag]:
            return None
        return entry.get("outputs")

    def write(self, outputs: dict[str, Any]) -> None:
        entry = {"bucket": self.bucket, "key": self.key, "etag": self.etag, "outputs": outputs}
        tmp = self.path.with_name(f".{self.FILE}.{os.getpid()}")
        try:
            write_private(tmp, json.dumps(entry))
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only data dir: no cache, nothing else changes


class PlanProgress:
    """A plan's heartbeat: every ``interval`` seconds, that it is working and how many resources it has read."""

    def __init__(self, console: Console, interval: float):
        self.console = console
        self.read = 0
        self._started = time.monotonic()
        self._ticker = Ticker(interval, self.report)

    def __call__(self, message: dict[str, Any]) -> None:
        if message.get("type") == "refresh_complete":
            self.read += 1

    def report(self) -> None:
        self.console.info(f"terraform plan: working ({time.monotonic() - self._started:.0f} s, "
                          f"{self.read} resources read so far)")

    def __enter__(self) -> "PlanProgress":
        self._ticker.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ticker.__exit__()


class ApplyProgress:
    """apply/destroy, one line per resource from Terraform's -json stream: when it completes (created,
    destroyed...), when it fails, and every STILL_EVERY seconds while it takes long (CloudFront: minutes)."""

    STILL_EVERY = 30
    DONE = {"create": "created", "delete": "destroyed", "update": "updated", "replace": "replaced", "read": "read"}
    DOING = {"create": "creating", "delete": "destroying", "update": "updating", "replace": "replacing",
             "read": "reading"}

    def __init__(self, console: Console):
        self.console = console
        self.done: list[tuple[str, str, int]] = []  # address, action, seconds
        self._started = time.monotonic()

    def __call__(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        hook = message.get("hook") or {}
        address = (hook.get("resource") or {}).get("addr", "?")
        action = str(hook.get("action", ""))
        seconds = int(hook.get("elapsed_seconds") or 0)
        if kind == "apply_complete":
            self.done.append((address, action, seconds))
            self.console.info(f"{address}: {self.DONE.get(action, action)} ({seconds} s)")
        elif kind == "apply_progress" and seconds and seconds % self.STILL_EVERY == 0:
            self.console.info(f"{address}: still {self.DOING.get(action, action)} after {seconds} s")
        elif kind == "apply_errored":
            self.console.fail(f"{address}: {self.DOING.get(action, action)} failed after {seconds} s")

    def summary(self, slowest: int = 3) -> str:
        """'27 resources in 63.8 s; slowest: aws_lb.main[0] (62 s), ...'"""
        ranked = sorted(self.done, key=lambda entry: -entry[2])[:slowest]
        names = ", ".join(f"{address} ({seconds} s)" for address, _, seconds in ranked)
        text = f"{len(self.done)} resources in {time.monotonic() - self._started:.1f} s"
        return f"{text}; slowest: {names}" if names else text


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _message(line: str) -> dict[str, Any]:
    """One line of Terraform's -json stream (a stray non-JSON line is kept as a message of its own)."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return {"@message": line.rstrip("\n"), "type": "text"}
    return message if isinstance(message, dict) else {"@message": line.rstrip("\n"), "type": "text"}


def _human(message: dict[str, Any]) -> str:
    """What Terraform would have printed without -json: its message, and a diagnostic's detail."""
    text = str(message.get("@message", ""))
    diagnostic = message.get("diagnostic") or {}
    if diagnostic.get("detail"):
        text += "\n" + str(diagnostic["detail"])
    return text


def _diagnostic(message: dict[str, Any]) -> str:
    diagnostic = message.get("diagnostic") or {}
    summary = str(diagnostic.get("summary") or message.get("@message", "")).strip()
    detail = next((line.strip() for line in str(diagnostic.get("detail") or "").splitlines() if line.strip()), "")
    return mask(f"{summary}: {detail}" if detail and len(summary) < 80 else summary)


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
