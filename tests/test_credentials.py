"""The task's AWS identity (devops/credentials.py) without AWS: precedence, caches, and one line for each way
signing in fails. What AWS sees with each identity is tested through the toolbox (tests/test_identities.py)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from devops import credentials
from devops.config import Settings
from devops.errors import DevopsError

KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME of its own with an empty ~/.aws, and no AWS variable from this machine."""
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / ".aws" / "credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    (tmp_path / ".aws").mkdir()
    return tmp_path


def config(home, text: str) -> None:
    (home / ".aws" / "config").write_text(text)


def settings() -> Settings:
    return Settings.load({})


def helper(home, name: str, body: str) -> str:
    path = home / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_keys_in_the_environment_win_over_aws_profile_as_in_the_aws_cli(home, monkeypatch):
    failing = helper(home, "broken-helper", "echo 'helper says no' >&2; exit 3")
    config(home, f"[profile dev]\ncredential_process = {failing}\n")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    frozen = credentials.session(settings()).get_credentials().get_frozen_credentials()
    assert frozen.access_key == "AKIAFROMENV"


def test_one_session_per_identity_and_the_helper_runs_once(home, monkeypatch):
    runs = home / "runs"
    answer = json.dumps({"Version": 1, "AccessKeyId": "AKIAHELPER", "SecretAccessKey": "from-helper"})
    config(home, f"[profile dev]\ncredential_process = {helper(home, 'h', f'echo x >> {runs}; echo {answer!r}')}\n")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    first, second = credentials.session(settings()), credentials.session(settings())
    assert first is second
    assert first.get_credentials().get_frozen_credentials().access_key == "AKIAHELPER"
    assert runs.read_text().count("x") == 1


@pytest.mark.parametrize("profile_text, expected", [
    ("", r"^AWS profile 'nope' not found: check AWS_PROFILE"),
    ("[profile nope]\ncredential_process = aws-vault export --format=json nope\n",
     r"^AWS profile 'nope' gets its credentials from `aws-vault` \(credential_process\), which is not in the "
     r"toolbox image: run the task under the helper on this host \(e.g. `aws-vault exec nope -- inv \.\.\.`\), "
     r"or through the helper's container-credentials server \(e.g. `aws-vault exec --ecs-server nope -- inv"),
    ("[profile nope]\ncredential_process = {helper}\n",
     r"^the credential helper \(credential_process\) of AWS profile 'nope' failed: locked: unlock the vault$"),
    ("[profile nope]\nregion = us-east-1\n", r"^no AWS credentials found for AWS profile 'nope': set AWS_PROFILE"),
    ("[profile nope]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Dev\n"
     "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n",
     r"^the SSO session of AWS profile 'nope' has expired or was never signed in: sign in with `inv login`"),
])
def test_each_way_signing_in_fails_is_one_line_naming_the_profile_and_the_fix(home, monkeypatch, profile_text,
                                                                              expected):
    monkeypatch.delenv("DEVOPS_INV", raising=False)
    failing = helper(home, "vault", "echo 'opening vault' >&2; echo 'locked: unlock the vault' >&2; exit 1")
    config(home, profile_text.replace("{helper}", failing))
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(DevopsError, match=expected) as raised:
        credentials.session(settings())
    assert "\n" not in str(raised.value)


def test_an_mfa_code_that_never_comes_is_one_line_before_any_request(home, monkeypatch):
    config(home, "[profile admin]\nrole_arn = arn:aws:iam::123456789012:role/admin\nsource_profile = base\n"
                 "mfa_serial = arn:aws:iam::123456789012:mfa/alice\n"
                 "[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = base\n")
    monkeypatch.setenv("AWS_PROFILE", "admin")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: no request may be made
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(DevopsError, match=r"^AWS profile 'admin' needs an MFA code and none came: run the task in "
                                          r"a terminal, or pipe the code"):
        credentials.session(settings())


def test_terraform_gets_the_identity_from_the_tasks_endpoint_and_nothing_else(home, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-env")
    env = credentials.terraform_environment(settings())
    for hidden in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        assert env[hidden] is None
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"
    import urllib.request
    request = urllib.request.Request(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                     headers={"Authorization": env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
    served = json.loads(urllib.request.urlopen(request, timeout=5).read())
    assert (served["AccessKeyId"], served["SecretAccessKey"], served["Token"]) == \
        ("AKIAFROMENV", "from-env", "token-from-env")
    wrong = urllib.request.Request(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": "guess"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=5)
    assert refused.value.code == 401
