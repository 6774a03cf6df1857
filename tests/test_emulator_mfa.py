"""MFA in the emulator's STS, as strict as AWS's: AssumeRole with SerialNumber needs the code the virtual MFA
device shows (devops/sandbox/totp.py), and a role whose trust policy requires MFA is refused without one.
Against a real emulator (python -m devops.emulator, started as the sandbox starts it)."""

from __future__ import annotations

import base64
import json
import time
import uuid

import botocore.session
import pytest
from botocore.exceptions import ClientError

from devops.console import Console
from devops.sandbox import HOST
from devops.sandbox.aws_emulator import start_emulator
from devops.sandbox.processes import terminate_group
from devops.sandbox.totp import totp, valid

sandbox = pytest.mark.sandbox  # a real service: the emulator this module starts


@pytest.mark.parametrize("at, code", [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"),
                                      (1234567890, "005924"), (2000000000, "279037"), (20000000000, "353130")])
def test_totp_is_rfc_6238(at, code):
    # RFC 6238's SHA-1 test vectors (8 digits there: the last 6 are the 6-digit code).
    assert totp(base64.b32encode(b"12345678901234567890").decode(), at) == code


def test_a_code_is_valid_a_step_either_way_and_no_further():
    seed, now = "JBSWY3DPEHPK3PXP", 1_700_000_000.0
    assert all(valid(seed, totp(seed, now + shift), now) for shift in (-30, 0, 30))
    assert not any(valid(seed, totp(seed, now + shift), now) for shift in (-90, 90))
    assert not valid(seed, "", now)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> str:
    record = start_emulator(tmp_path_factory.mktemp("emulator"), Console())
    yield f"http://{HOST}:{record['port']}"
    terminate_group(record["pid"])


def client(emulator: str, service: str, key_id: str = "test", secret: str = "test", token: str | None = None):
    return botocore.session.Session().create_client(service, region_name="us-east-1", endpoint_url=emulator,
                                                    aws_access_key_id=key_id, aws_secret_access_key=secret,
                                                    aws_session_token=token)


class Team:
    """alice: an IAM user with keys and a virtual MFA device; a role that trusts her with MFA only, one that
    trusts her without."""

    def __init__(self, emulator: str) -> None:
        self.emulator, iam, self.suffix = emulator, client(emulator, "iam"), uuid.uuid4().hex[:6]
        self.account = client(emulator, "sts").get_caller_identity()["Account"]
        self.name = f"alice-{self.suffix}"
        self.user_arn = iam.create_user(UserName=self.name)["User"]["Arn"]
        key = iam.create_access_key(UserName=self.name)["AccessKey"]
        self.sts = client(emulator, "sts", key["AccessKeyId"], key["SecretAccessKey"])
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName=self.name)["VirtualMFADevice"]
        seed = device["Base32StringSeed"]
        self.serial, self.seed = device["SerialNumber"], seed.decode() if isinstance(seed, bytes) else seed
        self.roles = {}
        for name, condition in (("mfa-only", {"Bool": {"aws:MultiFactorAuthPresent": "true"}}), ("plain", None)):
            statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": self.user_arn}}
            trust = {"Version": "2012-10-17", "Statement": [{**statement, **({"Condition": condition} if condition
                                                                              else {})}]}
            self.roles[name] = iam.create_role(RoleName=f"{name}-{self.suffix}",
                                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]

    def assume(self, role: str, **mfa: str) -> dict:
        return self.sts.assume_role(RoleArn=self.roles[role], RoleSessionName=self.name, **mfa)

    def seen_as(self, assumed: dict) -> str:
        """The identity AWS sees with the assumed role's credentials."""
        credentials = assumed["Credentials"]
        return client(self.emulator, "sts", credentials["AccessKeyId"], credentials["SecretAccessKey"],
                      credentials["SessionToken"]).get_caller_identity()["Arn"]


@pytest.fixture
def team(emulator) -> Team:
    return Team(emulator)


def refused(call) -> dict:
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return raised.value.response["Error"]


@sandbox
def test_the_right_code_assumes_the_role(team):
    for role in ("mfa-only", "plain"):
        assumed = team.assume(role, SerialNumber=team.serial, TokenCode=totp(team.seed))
        assert team.seen_as(assumed) == f"arn:aws:sts::{team.account}:assumed-role/{role}-{team.suffix}/{team.name}"
    # The code of the step before passes too (a clock a little behind), as on AWS; not at a step's very end,
    # where the emulator's clock could be a step further by the time it checks.
    if time.time() % 30 > 27:
        time.sleep(30 - time.time() % 30)
    team.assume("mfa-only", SerialNumber=team.serial, TokenCode=totp(team.seed, time.time() - 30))


@sandbox
def test_a_wrong_or_stale_code_is_refused_as_sts_refuses_it(team):
    wrong = f"{(int(totp(team.seed)) + 500000) % 1000000:06d}"
    stale = totp(team.seed, time.time() - 120)
    for code in (wrong, stale):
        error = refused(lambda: team.assume("mfa-only", SerialNumber=team.serial, TokenCode=code))
        assert error["Code"] == "AccessDenied"
        assert error["Message"] == "MultiFactorAuthentication failed with invalid MFA one time pass code. "


@sandbox
def test_an_unknown_serial_number_is_refused(team):
    error = refused(lambda: team.assume("mfa-only", SerialNumber=f"{team.serial}-nope", TokenCode=totp(team.seed)))
    assert error == {"Type": "Sender", "Code": "AccessDenied",
                     "Message": "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your "
                                "MFA serial number is valid and associated with this user."}


@sandbox
def test_a_role_that_requires_mfa_is_refused_without_a_code(team):
    error = refused(lambda: team.assume("mfa-only"))
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == (f"User: {team.user_arn} is not authorized to perform: sts:AssumeRole on resource: "
                                f"{team.roles['mfa-only']}")


@sandbox
def test_a_role_without_an_mfa_condition_is_assumed_without_a_code(team):
    assert team.seen_as(team.assume("plain")).startswith(f"arn:aws:sts::{team.account}:assumed-role/plain-")

