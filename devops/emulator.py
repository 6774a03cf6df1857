"""The sandbox's AWS emulator: moto's server, with four fixes where it answers otherwise than AWS.

moto 5 evaluates a bucket policy's Condition without the request's context keys, and takes a condition
on a key it does not know as satisfied. The dev bucket's TLS-only policy ("Deny s3:* when
aws:SecureTransport is false") then denies every object write. AWS takes a condition on an absent key
as not satisfied (except for the ...IfExists and Null operators), so the statement does not apply: the
fix does the same, which is what AWS does for requests over HTTPS.

moto 5 keeps a DB parameter group's parameters as they were sent, without the Source AWS reports
("user" for a parameter set in the group): the Terraform AWS provider reads a group's parameters with
Source "user", finds none, and plans to set them again after every apply. The fix records the source.

moto answers a HEAD that fails (S3's HeadBucket or HeadObject of what does not exist) as a web page
(werkzeug's text/html), where S3 answers application/xml, with no body either way. The tasks take an error
answered as a web page for something that is not AWS (a proxy's or a portal's page, devops.aws): the fix
gives the answer S3's type.

It also serves one request at a time: moto's backends are plain dicts shared by the server's threads, and
Terraform's parallel calls can race in them (seen: a security group's egress rule applied, answered with
an error, retried, and refused as a duplicate). Each call takes milliseconds, so the lock costs nothing
that matters; the provider's long waits are sleeps on its side.

moto's STS AssumeRole ignores MFA: the fix checks it as STS does. A request with SerialNumber needs the
TokenCode that IAM's virtual MFA device of that serial shows (devops/sandbox/totp.py; the step before or
after passes too, for clock skew), else AccessDenied with AWS's message; a role whose trust policy allows
sts:AssumeRole only with aws:MultiFactorAuthPresent "true" is refused to a request without a code.

ECS tasks run for real: a Fargate `run_task` starts its container through the local Docker engine
(devops/emulator_tasks.py).

CloudWatch reports RDS's FreeStorageSpace, as RDS publishes it every minute (moto publishes no metric of
RDS's): for the instance the sandbox's RDS stand-in plays, its allocated storage less what the stand-in's data
folder takes, computed when CloudWatch is read (devops/sandbox/rds_storage.py), with the newest minute's
timestamp.

Run as ``python -m devops.emulator -H HOST -p PORT``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import threading
from typing import Any, Callable, Iterable

from moto.cloudwatch.models import MetricDatum
from moto.core.common_models import CloudWatchMetricProvider
from moto.core.exceptions import AccessDeniedError
from moto.core.utils import utcnow
from moto.iam import access_control
from moto.iam.exceptions import NotFoundException
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.rds.models import DBParameterGroup, rds_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import get_partition
from werkzeug.serving import run_simple

from devops.emulator_tasks import TaskRunner
from devops.sandbox.rds_storage import free_storage_space
from devops.sandbox.totp import valid as valid_mfa_code

_is_action_permitted = access_control.IAMPolicyStatement.is_action_permitted


def _statement_applies_only_when_its_conditions_hold(
    self: access_control.IAMPolicyStatement, action: str, resource: str = "*", principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> Any:
    known = incoming_condition_values or {}
    for operator, keys in (self._statement.get("Condition") or {}).items():
        if operator.endswith("IfExists") or operator == "Null":
            continue
        if any(key not in known for key in keys):
            return access_control.PermissionResult.NEUTRAL
    return _is_action_permitted(self, action, resource, principal, incoming_condition_values)


access_control.IAMPolicyStatement.is_action_permitted = _statement_applies_only_when_its_conditions_hold

_update_parameters = DBParameterGroup.update_parameters


def _parameters_set_by_the_user(self: DBParameterGroup, new_parameters: Iterable[dict[str, Any]]) -> None:
    _update_parameters(self, [{**parameter, "Source": "user"} for parameter in new_parameters])


DBParameterGroup.update_parameters = _parameters_set_by_the_user


class StsAccessDenied(AccessDeniedError):
    """STS's AccessDenied (HTTP 403) with a message of its own."""

    def __init__(self, message: str) -> None:
        super(AccessDeniedError, self).__init__("AccessDenied", message)


INVALID_MFA_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
UNKNOWN_MFA_DEVICE = ("MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial "
                      "number is valid and associated with this user.")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _mfa_required(trust_policy: str) -> bool:
    """Whether a role's trust policy lets sts:AssumeRole through only with MFA: each of its Allows requires
    aws:MultiFactorAuthPresent "true", or a Deny applies when it is "false" or absent."""
    def mfa_present_is(statement: dict[str, Any], operators: tuple[str, ...], value: str) -> bool:
        condition = statement.get("Condition") or {}
        return any(value in [str(each).lower() for each in
                             _listed(condition.get(operator, {}).get("aws:MultiFactorAuthPresent"))]
                   for operator in operators)

    statements = [statement for statement in _listed(json.loads(trust_policy or "{}").get("Statement", []))
                  if {"sts:AssumeRole", "sts:*", "*"} & set(_listed(statement.get("Action")))]
    allows = [statement for statement in statements if statement.get("Effect") == "Allow"]
    denies = [statement for statement in statements if statement.get("Effect") == "Deny"]
    return (bool(allows) and all(mfa_present_is(allow, ("Bool", "BoolIfExists"), "true") for allow in allows)
            or any(mfa_present_is(deny, ("BoolIfExists",), "false") for deny in denies))


_assume_role = TokenResponse.assume_role


def _assume_role_checking_mfa(self: TokenResponse) -> Any:
    serial, code = self._get_param("SerialNumber"), self._get_param("TokenCode")
    iam = iam_backends[self.current_account][get_partition(self.region)]
    caller_key = self.get_access_key()
    if serial or code:
        device = iam.virtual_mfa_devices.get(serial or "")
        caller = iam.get_user_from_access_key_id(caller_key)
        if device is None or device.user is not None and caller is not None and device.user is not caller:
            raise StsAccessDenied(UNKNOWN_MFA_DEVICE)
        if not valid_mfa_code(device.base32_string_seed, code or ""):
            raise StsAccessDenied(INVALID_MFA_CODE)
    else:
        role_arn = self._get_param("RoleArn") or ""
        account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else self.current_account
        try:
            role = iam_backends[account][get_partition(self.region)].get_role_by_arn(role_arn)
        except NotFoundException:  # moto lets a role that does not exist be assumed: nothing to check
            role = None
        if role is not None and _mfa_required(role.assume_role_policy_document):
            caller_arn = self.backend.get_caller_identity(caller_key, self.region)[1]
            raise StsAccessDenied(f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: "
                                  f"{role_arn}")
    return _assume_role(self)


TokenResponse.assume_role = _assume_role_checking_mfa


class RdsFreeStorage(CloudWatchMetricProvider):
    """AWS/RDS FreeStorageSpace of the RDS stand-in's instance (moto asks every provider whenever CloudWatch's
    metrics are read): stamped with the last whole minute, as RDS's datapoints are, so that a read whose EndTime
    is now finds it."""

    @staticmethod
    def get_cloudwatch_metrics(account_id: str, region: str) -> list[MetricDatum]:
        try:
            databases = rds_backends[account_id][region].databases
            free = free_storage_space({name: int(db.allocated_storage or 0) for name, db in databases.items()})
        except Exception:  # noqa: BLE001 - a metric that cannot be computed is a metric without a datapoint
            return []
        minute = utcnow().replace(second=0, microsecond=0) - datetime.timedelta(minutes=1)
        return [MetricDatum("AWS/RDS", "FreeStorageSpace", float(value),
                            [{"Name": "DBInstanceIdentifier", "Value": instance}], minute, "Bytes")
                for instance, value in free.items()]


# One request at a time; the ECS task runner (devops/emulator_tasks.py) takes it too to change a task's state.
LOCK = threading.Lock()


def serialized(app: Callable[..., Iterable[bytes]], lock: threading.Lock = LOCK) -> Callable[..., Iterable[bytes]]:
    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return app(environ, start_response)

    return handle


def head_errors_as_s3_answers_them(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "HEAD":
            return app(environ, start_response)

        def respond(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            if int(status.split()[0]) >= 400:
                headers = [(name, "application/xml") if name.lower() == "content-type" and "text/html" in value
                           else (name, value) for name, value in headers]
            return start_response(status, headers, *rest)

        return app(environ, respond)

    return handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs from it
    TaskRunner(f"http://{args.host}:{args.port}", LOCK).install()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialized(head_errors_as_s3_answers_them(app)), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
