"""Validation latency: `./toolbox/inv validate` against host-native `inv validate` and the bash script.

The path users run, `./toolbox/inv validate`, against host-native `inv validate` and the original bash script
dev-validation.sh, on one sandbox, both modes.

Runs on the host (Docker, and Python with requirements.txt: .venv). The sandbox is the
one users get: `./toolbox/inv sandbox.up` (the checkout's .sandbox, servers in the sandbox's container), its
variables from `./toolbox/inv sandbox.env`. Methods, each timed as a whole command:

- toolbox (the headline): `./toolbox/inv validate` (a docker exec into the checkout's warm container), with the
  sandbox's keys in the environment;
- assumed role: the same, signed in as a team with MFA does: a HOME whose profile assumes a role from a source
  profile's keys with an MFA device (the emulator checks the code as STS does); `./toolbox/inv login` takes the
  code once, untimed, and each timed run uses the role's cached session, as every task after a login does;
- fresh container: the same task in a container started per run (`docker run --rm`: what the warm container saves);
- host-native: `inv validate` with INVOKE_DEVOPS_TOOLBOX=host (Terraform's data dir initialized on the host:
  the sandbox's links its providers into the container's plugin cache);
- bash: the original bash script this project replaces, taken at run time from the plan document that holds
  it (Task 4, --bash-plan; outside this repository) and run as written, from a temporary
  checkout-like folder whose terraform/ links to this repository's, with the AWS CLI v1 from its own venv
  (--awscli-bin; `python3 -m venv /tmp/awscli-venv && /tmp/awscli-venv/bin/pip install awscli`).

Each method gets one untimed warm-up per mode, then --runs rounds, each running every method once in turn;
medians, min-max and the ratios are printed, the AWS requests of a run (the sandbox's network counts them: the
emulator closes each connection), and the peak RSS (VmHWM) of the inv process in the container.
Targets: toolbox < 1.5 s in pilot light, bash >= 5x toolbox, peak RSS < 150 MB, the assumed role at most one
AWS request more than keys (and the login that asks for the code at most one more: its AssumeRole).

    .venv/bin/python bench/validate_latency.py \\
        --bash-plan PATH/implementation-plan.md [--runs 7] [--modes pilot,active] [--reuse] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402

from devops import toolbox  # noqa: E402
from devops.config import Settings  # noqa: E402
from devops.console import Console  # noqa: E402
from devops.sandbox import Sandbox  # noqa: E402
from devops.sandbox.totp import totp  # noqa: E402
from devops.sandbox.provider_mirror import use_provider_mirror  # noqa: E402

PILOT_TARGET = 1.5
RATIO_TARGET = 5.0
RSS_TARGET_MB = 150
SHIM = str(ROOT / "toolbox" / "inv")
HEADLINE = "./toolbox/inv validate"
ASSUMED = "./toolbox/inv validate, assumed role (MFA)"
BASH = "bash dev-validation.sh"
# The inv process's peak RSS, measured in the warm container around the same task.
PEAK_RSS = ("import sys; from invoke.main import program; program.run(['inv', 'validate'], exit=False); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1], file=sys.stderr)")


def bash_script(plan: Path, name: str = "dev-validation.sh") -> str:
    """The bash block of the plan's task "Create <name> Script" (Task 4 for dev-validation.sh), as written."""
    text = plan.read_text()
    start = text.index(f": Create {name} Script")
    section = text[start:text.index("\n## ", start)]
    return re.search(r"```bash\n(#!/bin/bash.*?)```", section, re.S).group(1)


def shim(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["sh", SHIM, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode:
        sys.exit(f"./toolbox/inv {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def sandbox_environment(base: dict[str, str]) -> dict[str, str]:
    """The environment after `eval "$(./toolbox/inv sandbox.env --tunnel)"`: validate logs in to RDS through the
    tunnel (without one it only warns that the private RDS is not reachable from here, which is quicker)."""
    env = dict(base)
    for line in shim("sandbox.env", "--tunnel", env=base).stdout.splitlines():
        words = shlex.split(line)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
        elif words[0] == "unset":
            env.pop(words[1], None)
    env["NO_COLOR"] = "1"
    return env


def host_data_dir(env: dict[str, str], folder: Path) -> dict[str, str]:
    """Host-native Terraform needs its own data dir (providers installed on the host), same backend."""
    backend = json.loads(Path(env["TF_DATA_DIR"], "terraform.tfstate").read_text())["backend"]["config"]
    host_env = {**env, "TF_DATA_DIR": str(folder / "terraform"), "INVOKE_DEVOPS_TOOLBOX": "host"}
    use_provider_mirror(folder, host_env)
    settings = {name: ("true" if value is True else str(value)) for name, value in backend.items()
                if name in ("bucket", "key", "region", "use_path_style") and value not in (None, False)}
    subprocess.run(["terraform", f"-chdir={ROOT / 'terraform/environments/dev'}", "init", "-input=false", "-no-color",
                    *[f"-backend-config={k}={v}" for k, v in settings.items()]],
                   env=host_env, check=True, capture_output=True)
    return host_env


def _passed(env: dict[str, str]) -> list[str]:
    """The variables toolbox/inv passes by name (env_flags there)."""
    return [f"-e{name}" for name in env if (name.startswith(("AWS_", "INVOKE_")) or name in (
        "NEON_DATABASE_URL", "TF_DATA_DIR", "TF_PROVIDER_MIRROR")) and name not in (
        "AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")]


def fresh_command(env: dict[str, str]) -> list[str]:
    """The task in a container started for the run: the start-up cost that the warm container saves."""
    mounts = [f"-v{ROOT}:{ROOT}", "-vdevops-toolbox-terraform:/var/cache/devops-toolbox"]
    aws_dir = Path(env.get("HOME", "/nonexistent"), ".aws")
    if aws_dir.is_dir():
        mounts.append(f"-v{aws_dir}:/home/toolbox/.aws:ro")
    if env.get("TF_PROVIDER_MIRROR") and Path(env["TF_PROVIDER_MIRROR"]).is_dir():
        mounts.append(f"-v{env['TF_PROVIDER_MIRROR']}:{env['TF_PROVIDER_MIRROR']}:ro")
    return ["docker", "run", "--rm", "-i", "--network", "host", "--user", f"{os.getuid()}:{os.getgid()}",
            "-w", str(ROOT), *mounts, *_passed(env), toolbox.image("toolbox"), "inv", "validate"]


def peak_rss_mb(env: dict[str, str]) -> float:
    """VmHWM of the inv process running validate in the warm container (docker exec, as the shim does)."""
    warm = subprocess.run(["docker", "ps", "-q", "--filter", f"label=devops.toolbox.checkout={ROOT}", "--filter",
                           f"ancestor={toolbox.image('toolbox')}"], capture_output=True, text=True).stdout.split()[0]
    result = subprocess.run(["docker", "exec", "-i", *_passed(env), "-w", str(ROOT), warm,
                             "/usr/local/bin/toolbox-entrypoint", "python", "-c", PEAK_RSS], env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return int(result.stderr.strip().splitlines()[-1]) / 1024


def assumed_role_env(env: dict[str, str], sandbox: Sandbox, home: Path) -> tuple[dict[str, str], int]:
    """The environment of a user whose profile assumes a role with MFA, signed in once (`login`, the code piped);
    and the AWS requests of that login."""
    iam, suffix = sandbox.client("iam"), os.urandom(3).hex()
    user = f"bench-{suffix}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    account = sandbox.client("sts").get_caller_identity()["Account"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{account}:user/{user}"},
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}
    role = iam.create_role(RoleName=f"bench-admin-{suffix}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"]
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text(f"[profile admin]\nrole_arn = {role['Arn']}\nsource_profile = base\n"
                                          f"mfa_serial = {device['SerialNumber']}\n")
    (home / ".aws" / "credentials").write_text(f"[base]\naws_access_key_id = {key['AccessKeyId']}\n"
                                               f"aws_secret_access_key = {key['SecretAccessKey']}\n")
    role_env = {name: value for name, value in env.items()
                if name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    role_env.update(HOME=str(home), AWS_PROFILE="admin")
    seed = device["Base32StringSeed"]
    network = sandbox.network()
    network.reset()
    login = subprocess.run(["sh", SHIM, "login"], env=role_env, cwd=ROOT, capture_output=True, text=True,
                           input=totp(seed.decode() if isinstance(seed, bytes) else seed) + "\n")
    if login.returncode or "assumed-role/" not in login.stdout:
        sys.exit(f"login with the assumed role failed:\n{login.stdout}{login.stderr}")
    return role_env, network.counts()["aws"].connections


def timed(command: list[str], env: dict[str, str], cwd: Path, sandbox: Sandbox) -> tuple[float, int, int]:
    """Seconds, exit code and AWS requests of one run."""
    network = sandbox.network()
    network.reset()
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, result.returncode, network.counts()["aws"].connections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bash-plan", type=Path, required=True,
                        help="the plan document (implementation-plan.md) whose Task 4 holds dev-validation.sh")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--modes", default="pilot,active", help="pilot, active or both (active: about 2 min of apply)")
    parser.add_argument("--awscli-bin", default="/tmp/awscli-venv/bin")
    parser.add_argument("--reuse", action="store_true", help="use the checkout's sandbox when it is already up")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    args = parser.parse_args()
    if not Path(args.awscli_bin, "aws").exists():
        sys.exit(f"no aws in {args.awscli_bin}: python3 -m venv /tmp/awscli-venv && "
                 "/tmp/awscli-venv/bin/pip install awscli")

    base = {name: value for name, value in os.environ.items() if name not in (toolbox.MARKER, "INVOKE_DEVOPS_TOOLBOX")}
    if not (args.reuse and shim("sandbox.status", env=base, check=False).returncode == 0):
        print("Starting the sandbox through the toolbox (about 2 min)...", flush=True)
        shim("sandbox.up", env=base)
    env = sandbox_environment(base)
    settings = Settings.load({}, environ=env)
    sandbox = Sandbox(Settings.load({}, environ=base), Console())
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows, medians, peaks, requests = [], {}, [], {}

    with tempfile.TemporaryDirectory(prefix="bash-validation-") as tmp:
        checkout = Path(tmp)
        host_env = host_data_dir(env, checkout / "host")
        (checkout / "scripts").mkdir()
        script = checkout / "scripts" / "dev-validation.sh"
        script.write_text(bash_script(args.bash_plan))
        script.chmod(0o755)
        (checkout / "terraform").symlink_to(ROOT / "terraform")
        # AWS CLI v1 ignores AWS_ENDPOINT_URL for some services (rds goes to https://rds.amazonaws.com/),
        # so the script's `aws` is a wrapper adding --endpoint-url; the script itself runs unchanged. Its
        # terraform reads the state through the host's data dir. AWS CLI v1 reads AWS_DEFAULT_REGION only.
        (checkout / "bin").mkdir()
        wrapper = checkout / "bin" / "aws"
        wrapper.write_text(f'#!/bin/sh\nexec {Path(args.awscli_bin, "aws")} "$@" --endpoint-url "$AWS_ENDPOINT_URL"\n')
        wrapper.chmod(0o755)
        bash_env = {**host_env, "PATH": f"{checkout / 'bin'}:{args.awscli_bin}:{env['PATH']}",
                     "PROJECT_NAME": settings.project_name, "AWS_DEFAULT_REGION": settings.region}
        (ROOT / ".toolbox-tmp").mkdir(exist_ok=True)
        role_home = Path(tempfile.mkdtemp(prefix="bench-home-", dir=ROOT / ".toolbox-tmp"))
        role_env, login_requests = assumed_role_env(env, sandbox, role_home)
        methods = {HEADLINE: (["sh", SHIM, "validate"], env, ROOT),
                   ASSUMED: (["sh", SHIM, "validate"], role_env, ROOT),
                   "fresh container per run (docker run)": (fresh_command(env), env, ROOT),
                   "host-native inv validate": ([sys.executable, "-m", "invoke", "validate"], host_env, ROOT),
                   BASH: (["bash", str(script)], bash_env, checkout)}
        try:
            for mode in modes:
                if mode == "active":
                    print("Activating (about a minute of apply)...", flush=True)
                    shim("activate", "--yes", env=env)
                for name, (command, menv, cwd) in methods.items():
                    timed(command, menv, cwd, sandbox)  # warm-up: file caches, the warm container, the outputs cache
                times: dict[str, list[float]] = {name: [] for name in methods}
                codes: dict[str, set[int]] = {name: set() for name in methods}
                asked: dict[str, list[int]] = {name: [] for name in methods}
                for _ in range(args.runs):
                    for name, (command, menv, cwd) in methods.items():
                        seconds, code, count = timed(command, menv, cwd, sandbox)
                        times[name].append(seconds)
                        codes[name].add(code)
                        asked[name].append(count)
                    peaks.append(peak_rss_mb(env))
                for name in methods:
                    medians[(mode, name)] = statistics.median(times[name])
                    requests[(mode, name)] = statistics.median(asked[name])
                    rows.append([mode, name, f"{medians[(mode, name)]:.2f}",
                                 f"{min(times[name]):.2f}-{max(times[name]):.2f}",
                                 f"{medians[(mode, name)] / medians[(mode, HEADLINE)]:.1f}x",
                                 f"{requests[(mode, name)]:g}", ",".join(map(str, sorted(codes[name])))])
        finally:
            if "active" in modes:
                # Back to pilot light, whatever happened, so a kept (or reused) sandbox is as it was.
                shim("deactivate", "--yes", env=env, check=False)
            shim("toolbox.stop", env=role_env, check=False)
            shutil.rmtree(role_home, ignore_errors=True)
            if not args.keep:
                shim("sandbox.down", env=base, check=False)

    print()
    print(f"{args.runs} rounds per mode, each method once per round in turn (seconds; ratio to {HEADLINE})")
    print(tabulate(rows, headers=["mode", "method", "median", "min-max", "ratio", "AWS requests", "exit"],
                   disable_numparse=True))
    print()
    if "pilot" in modes:
        pilot = medians[("pilot", HEADLINE)]
        print(f"{HEADLINE} in pilot light: {pilot:.2f}s (target < {PILOT_TARGET}s): "
              f"{'met' if pilot < PILOT_TARGET else 'NOT met'}")
    ratios = [medians[(m, BASH)] / medians[(m, HEADLINE)] for m in modes]
    print(f"bash / toolbox: {min(ratios):.1f}x at worst (target >= {RATIO_TARGET:.0f}x): "
          f"{'met' if min(ratios) >= RATIO_TARGET else 'NOT met'}")
    extra = max(requests[(m, ASSUMED)] - requests[(m, HEADLINE)] for m in modes)
    print(f"assumed role: {extra:+g} AWS requests a task against keys (target at most +1): "
          f"{'met' if extra <= 1 else 'NOT met'}; the login that took the MFA code: {login_requests} "
          "(AssumeRole and GetCallerIdentity)")
    peak = max(peaks)
    print(f"peak RSS of the inv process in the container: {peak:.0f} MB (median {statistics.median(peaks):.0f}; "
          f"target < {RSS_TARGET_MB} MB): {'met' if peak < RSS_TARGET_MB else 'NOT met'}")


if __name__ == "__main__":
    main()
