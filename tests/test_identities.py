"""Signing in as teams do, through ./toolbox/inv on a Docker-only host with a HOME of its own: keys in a
profile, keys in the environment beside AWS_PROFILE, a credential helper the image can run and one it cannot,
a role assumed with MFA, an IAM Identity Center (SSO) session. Each test asserts which identity AWS saw (the
emulator's GetCallerIdentity, as `inv login` prints it), and each failure is one line, exit 1, no secret.

The emulator checks MFA codes as STS does (devops/emulator.py); the SSO portal and its OIDC service are a
stand-in on 127.0.0.1 (devops/sandbox/sso_stand_in.py), reached through AWS_ENDPOINT_URL_SSO[_OIDC].
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from devops.sandbox.aws_emulator import emulator_url
from devops.sandbox.sso_stand_in import SsoStandIn
from devops.sandbox.totp import totp
from tests.helpers import without_log
from tests.shim import SHIM, shim_env

# The variables of the sandbox's environment a user's shell would hold besides the identity.
IDENTITY = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@dataclass(frozen=True)
class Person:
    name: str
    key_id: str
    secret: str

    @property
    def credentials(self) -> str:
        return f"[{self.name}]\naws_access_key_id = {self.key_id}\naws_secret_access_key = {self.secret}\n"


@dataclass(frozen=True)
class Team:
    account: str
    alice: Person  # has an MFA device, may assume the admin role with it
    bob: Person
    role_arn: str
    mfa_serial: str
    seed: str

    def code(self) -> str:
        """alice's MFA code now, as her authenticator app shows it."""
        return totp(self.seed)


@pytest.fixture(scope="module")
def team(sandbox) -> Team:
    """Two IAM users with keys in the emulator; a role that trusts alice with MFA only; alice's MFA device."""
    iam, suffix = sandbox.client("iam"), uuid.uuid4().hex[:6]
    people = []
    for name in ("alice", "bob"):
        user = f"{name}-{suffix}"
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        people.append(Person(user, key["AccessKeyId"], key["SecretAccessKey"]))
    account = sandbox.client("sts").get_caller_identity()["Account"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{account}:user/{people[0].name}"},
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}
    role = iam.create_role(RoleName=f"dev-admin-{suffix}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName=people[0].name)["VirtualMFADevice"]
    seed = device["Base32StringSeed"]
    seed = seed.decode() if isinstance(seed, bytes) else seed
    return Team(account, people[0], people[1], role["Arn"], device["SerialNumber"], seed)


@pytest.fixture
def home(scratch) -> Path:
    (scratch / "home" / ".aws").mkdir(parents=True)
    return scratch / "home"


class User:
    """Runs ./toolbox/inv as a user of this HOME would, on the sandbox, with no identity but what the test
    gives; ``stdin``: what is piped in (None: nothing)."""

    def __init__(self, path: str, sandbox_env: dict[str, str], home: Path):
        self.path, self.home = path, home
        self.base = {name: value for name, value in sandbox_env.items()
                     if name.startswith(("AWS_", "INVOKE_")) and name not in IDENTITY
                     or name in ("TF_DATA_DIR", "NEON_DATABASE_URL")}

    def command(self, *args: str) -> list[str]:
        return ["sh", str(SHIM), *args]

    def env(self, **extra: str) -> dict[str, str]:
        return shim_env(self.path, HOME=str(self.home), **{**self.base, **extra})

    def __call__(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=self.env(**env), input=stdin or "", capture_output=True,
                              text=True, timeout=600)


@pytest.fixture
def user(docker_only_path, sandbox_env, home):
    run = User(docker_only_path, sandbox_env, home)
    yield run
    run("toolbox.stop")


def write(home: Path, config: str = "", credentials: str = "") -> None:
    (home / ".aws" / "config").write_text(config)
    (home / ".aws" / "credentials").write_text(credentials)


def signed_in_as(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "signed in as " in line)
    return line.split("signed in as ")[1].split()[0]


def one_error(result: subprocess.CompletedProcess, *secrets: str) -> str:
    """The one [ERROR] line of a failed task (exit 1), with no secret in anything it printed."""
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1, result.stderr
    assert "bug" not in errors[0] and "Traceback" not in result.stderr
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    return without_log(errors[0])


def aws_requests(sandbox, run) -> tuple[subprocess.CompletedProcess, int]:
    """``run()`` and the AWS requests it made (one a connection: the emulator closes each)."""
    network = sandbox.network()
    network.reset()
    result = run()
    return result, network.counts()["aws"].connections


def test_keys_in_a_profile_and_in_the_environment_beside_aws_profile(user, home, team):
    write(home, "[profile vault]\ncredential_process = aws-vault export --format=json vault\n"
                f"[profile {team.alice.name}]\nregion = us-east-1\n", team.alice.credentials)
    assert signed_in_as(user("login", AWS_PROFILE=team.alice.name)) == \
        f"arn:aws:iam::{team.account}:user/{team.alice.name}"
    # The environment's keys win over AWS_PROFILE, as in the AWS CLI (the profile's helper is never run).
    bob = user("login", AWS_PROFILE="vault", AWS_ACCESS_KEY_ID=team.bob.key_id,
               AWS_SECRET_ACCESS_KEY=team.bob.secret)
    assert signed_in_as(bob) == f"arn:aws:iam::{team.account}:user/{team.bob.name}"
    assert team.bob.secret not in bob.stdout + bob.stderr


def test_a_credential_helper_the_image_can_run_and_one_only_the_host_has(user, home, team, scratch):
    helper = scratch / "credential-helper"  # under the checkout: the container sees it at the same path
    answer = json.dumps({"Version": 1, "AccessKeyId": team.bob.key_id, "SecretAccessKey": team.bob.secret})
    helper.write_text(f"#!/bin/sh\n[ \"$1\" = fail ] && {{ echo 'vault is locked' >&2; exit 2; }}\necho '{answer}'\n")
    helper.chmod(0o755)
    write(home, f"[profile helped]\ncredential_process = {helper}\n"
                f"[profile failing]\ncredential_process = {helper} fail\n"
                "[profile vault]\ncredential_process = aws-vault export --format=json vault\n")
    assert signed_in_as(user("login", AWS_PROFILE="helped")) == f"arn:aws:iam::{team.account}:user/{team.bob.name}"
    failed = one_error(user("sync.neon-to-rds", "--dry-run", AWS_PROFILE="failing"), team.bob.secret)
    assert failed.startswith("[ERROR] the credential helper (credential_process) of AWS profile 'failing' failed: "
                             "vault is locked")
    missing = one_error(user("sync.neon-to-rds", "--dry-run", AWS_PROFILE="vault"))
    assert "AWS profile 'vault' gets its credentials from `aws-vault` (credential_process), which is not in the " \
           "toolbox image" in missing
    assert f"aws-vault exec vault -- {SHIM}" in missing and "aws-vault exec --ecs-server vault" in missing
    # validate: the same words, in one FAIL line, and nothing else checked.
    validated = user("validate", AWS_PROFILE="vault")
    failures = [line for line in validated.stdout.splitlines() if "FAIL" in line]
    assert validated.returncode == 1 and len(failures) == 1, validated.stdout
    assert "gets its credentials from `aws-vault`" in failures[0]
    unknown = one_error(user("sync.neon-to-rds", "--dry-run", AWS_PROFILE="nope"))
    assert unknown.startswith("[ERROR] AWS profile 'nope' not found: check AWS_PROFILE")


def test_a_role_assumed_with_mfa_asks_once_and_terraform_uses_it(user, home, team, sandbox):
    write(home, f"[profile admin]\nrole_arn = {team.role_arn}\nsource_profile = {team.alice.name}\n"
                f"mfa_serial = {team.mfa_serial}\n", team.alice.credentials)
    cache = home / ".aws" / "cli" / "cache"
    no_code = one_error(user("login", AWS_PROFILE="admin"))
    assert no_code.startswith("[ERROR] AWS profile 'admin' needs an MFA code and none came")
    wrong = one_error(user("login", AWS_PROFILE="admin", stdin=f"{(int(team.code()) + 500000) % 1000000:06d}\n"),
                      team.alice.secret)
    assert wrong.startswith("[ERROR] AWS refused the MFA code for AWS profile 'admin' "
                            "(MultiFactorAuthentication failed with invalid MFA one time pass code)")
    assert not list(cache.glob("*.json"))  # nothing written
    # The code piped once: one STS call more than keys (AssumeRole, then GetCallerIdentity), cached.
    first, requests = aws_requests(sandbox, lambda: user("login", AWS_PROFILE="admin", stdin=team.code() + "\n"))
    role = team.role_arn.split("/")[-1]
    assert signed_in_as(first).startswith(f"arn:aws:sts::{team.account}:assumed-role/{role}/")
    assert requests == 2, first.stderr
    cached = list(cache.glob("*.json"))
    assert len(cached) == 1 and cached[0].stat().st_uid == os.getuid()
    assert team.alice.secret not in cached[0].read_text()
    # Later tasks: no code, no AssumeRole; Terraform plans with the role (it has no prompt of its own).
    again, requests = aws_requests(sandbox, lambda: user("login", AWS_PROFILE="admin"))
    assert signed_in_as(again) == signed_in_as(first) and requests == 1
    planned = user("activate", "--dry-run", AWS_PROFILE="admin")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "MFA" not in planned.stderr


SSO_CONFIG = """[profile sso]
sso_session = corp
sso_account_id = {account}
sso_role_name = DevAccess
region = us-east-1
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access
"""


@pytest.fixture
def sso(sandbox_state):
    with SsoStandIn(emulator_url(sandbox_state)) as stand_in:
        yield stand_in


def sso_login(user, sso: SsoStandIn) -> subprocess.CompletedProcess:
    """`inv login` for the SSO profile, played as a user would: the device code's URL the AWS CLI prints is
    opened (here: fetched, the stand-in's page approves the code) while the task waits."""
    process = subprocess.Popen(user.command("login"), env=user.env(AWS_PROFILE="sso", AWS_ENDPOINT_URL_SSO=sso.url,
                                                                 AWS_ENDPOINT_URL_SSO_OIDC=sso.url),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed = []
    try:
        for line in process.stdout:
            printed.append(line)
            if line.startswith(sso.url) and "user_code=" in line:
                urllib.request.urlopen(line.strip(), timeout=10).read()
                break
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(printed) + out, err)


def test_an_sso_session_signs_in_with_the_device_code_and_refreshes_its_token(user, home, team, sso):
    write(home, SSO_CONFIG.format(account=team.account))
    signed_in = sso_login(user, sso)
    assert "Then enter the code" in signed_in.stdout
    arn = signed_in_as(signed_in)
    assert arn.startswith(f"arn:aws:sts::{team.account}:assumed-role/AWSReservedSSO_DevAccess_")
    token_file = home / ".aws" / "sso" / "cache" / f"{hashlib.sha1(b'corp').hexdigest()}.json"
    assert token_file.stat().st_uid == os.getuid()
    token = json.loads(token_file.read_text())
    assert token["accessToken"] not in signed_in.stdout + signed_in.stderr
    # The role's credentials are cached (~/.aws/cli/cache, as the AWS CLI does): the next task asks nothing.
    role_credentials = list((home / ".aws" / "cli" / "cache").glob("*.json"))
    assert len(role_credentials) == 1
    # Once they have expired (here: removed), with 5 minutes left on the token, the task refreshes the token
    # (botocore does in its last 15 minutes) and writes the cache back.
    role_credentials[0].unlink()
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
    token_file.write_text(json.dumps({**token, "expiresAt": soon.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    expiring = json.loads(token_file.read_text())
    refreshes = sso.calls["CreateToken"]
    validated = user("validate", "--json", AWS_PROFILE="sso", AWS_ENDPOINT_URL_SSO=sso.url,
                     AWS_ENDPOINT_URL_SSO_OIDC=sso.url)
    checks = {check["name"]: check for check in json.loads(validated.stdout)["checks"]}
    assert checks["AWS credentials"]["status"] == "PASS", validated.stderr
    assert checks["AWS credentials"]["detail"].startswith(arn.rsplit("/", 1)[0])
    assert sso.calls["CreateToken"] == refreshes + 1
    refreshed = json.loads(token_file.read_text())
    assert refreshed["accessToken"] != token["accessToken"]
    assert refreshed["expiresAt"] > expiring["expiresAt"]  # an hour ahead again, where 5 minutes were left
    # Expired, and the refresh token revoked (the role's credentials expired too): one line naming the profile
    # and the fix, in every task.
    for cached in (home / ".aws" / "cli" / "cache").glob("*.json"):
        cached.unlink()
    sso.expire_access_tokens()
    sso.revoke_refresh_tokens()
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    token_file.write_text(json.dumps({**refreshed, "expiresAt": past.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    expired = one_error(user("sync.neon-to-rds", "--dry-run", AWS_PROFILE="sso", AWS_ENDPOINT_URL_SSO=sso.url,
                             AWS_ENDPOINT_URL_SSO_OIDC=sso.url), refreshed["accessToken"], refreshed["refreshToken"])
    assert expired == (f"[ERROR] the SSO session of AWS profile 'sso' has expired or was never signed in: sign in "
                       f"with `{SHIM} login` (or `aws sso login` where the AWS CLI is installed)")
