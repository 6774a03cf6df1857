"""AWS sessions and clients built from Settings, the caller's identity, and secrets.

The clients are botocore's, which boto3's are too: boto3 itself (its resources, its transfer manager) is not
used, and importing it costs every task about 0.15 s more. AWS_ENDPOINT_URL (the sandbox's emulator) is
passed explicitly so that a Settings object built from another environment still reaches the right endpoint.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import re
import threading
from typing import Any

import botocore
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.parsers import ResponseParserError

from devops import credentials, hints
from devops.config import Settings
from devops.errors import DevopsError
from devops.masking import register_secret

# Short connect timeout and few retries: a wrong endpoint or a dead emulator must fail in seconds.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
SMALL_BODY = 1024 * 1024
# What a region's name looks like: lower-case words and a number, joined by dashes (us-east-1, us-gov-west-1,
# eusc-de-east-1). An availability zone (us-east-1a), capitals or underscores are not one.
REGION_NAME = re.compile(r"[a-z]+(-[a-z]+)+-[0-9]+")
EXAMPLE_REGION = "us-east-1"


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's endpoint data: partitions.json, which its endpoint rules
    resolve a region with (it lists new regions no later than endpoints.json). Its "aws-global" pseudo-regions
    are not region names."""
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    return frozenset(region for partition in partitions for region in partition["regions"]
                     if REGION_NAME.fullmatch(region))


def region_problem(settings: Settings) -> str | None:
    """Why the tasks cannot use the settings' region, in one line; None when they can.

    A region is used when botocore's endpoint data lists it, in any partition. Any other name is refused before
    a request is made, whichever endpoint the requests would go to: on AWS an unknown region is a host name that
    does not exist (a typo, us-esat-1, would fail as "could not connect"), and an emulator such as the sandbox's
    (AWS_ENDPOINT_URL) knows the regions its own botocore lists and answers the others with a 500 page; so
    AWS_ENDPOINT_URL is no sign that a region is meant. A region newer than the installed botocore is meant when
    devops.new_region (INVOKE_DEVOPS_NEW_REGION) names it too: the same name twice is deliberate, and a typo in
    either is still caught.
    """
    region, source = settings.region, settings.region_source or "the region setting"
    if not REGION_NAME.fullmatch(region):
        return f"AWS region {region!r} is not a region name: check {source} (a region name looks like {EXAMPLE_REGION})"
    if region in known_regions() or region == settings.new_region:
        return None
    close = difflib.get_close_matches(region, sorted(known_regions()), n=2)
    hint = f"did you mean {' or '.join(close)}?" if close else f"a region name looks like {EXAMPLE_REGION}"
    return (f"unknown AWS region {region!r}: no AWS partition in botocore {botocore.__version__} has it; check "
            f"{source} ({hint}), or, for a region newer than botocore, also set INVOKE_DEVOPS_NEW_REGION={region}")


def require_region(settings: Settings) -> None:
    """region_problem as an error: called before any request (every client is made by ``client``)."""
    problem = region_problem(settings)
    if problem:
        raise DevopsError(problem)


class ForeignAnswer(DevopsError):
    """An answer that is not an AWS API's: a web page, a proxy's error, a body botocore cannot parse. It names
    the endpoint and what to check, and ends the call at once (botocore would retry a 5xx)."""


def foreign_answer(settings: Settings, endpoint: str, what: str) -> str:
    answered = f"{endpoint} answered {what}, not as an AWS API does"
    if settings.uses_emulator:
        return (f"{answered}: check AWS_ENDPOINT_URL (it must lead to AWS or an emulator of it, such as the "
                f"sandbox's: `{hints.inv('sandbox.status')}`) and the region {settings.region}")
    return (f"{answered}: check the way to AWS from here (a proxy: HTTPS_PROXY, NO_PROXY) and the region "
            f"{settings.region}")


def _is_web_page(response: dict[str, Any]) -> bool:
    """A web page (a server's error page, a proxy's, a portal's): never an AWS API's answer, which is XML or JSON.
    Its body tells when botocore has read it; an error's Content-Type tells too (a HEAD's error has no body). A
    download's Content-Type is its object's, and its body (a stream) the caller's data: neither is looked at."""
    body, status = response.get("body"), response["status_code"]
    if status >= 300 and "text/html" in str(response["headers"].get("content-type", "")).lower():
        return True
    head = body[:512].lstrip().lower() if isinstance(body, bytes) else b""
    return head.startswith(b"<") and (head.startswith(b"<!doctype html") or b"<html" in head)


def _refuse_foreign_answers(made: Any, settings: Settings) -> None:
    endpoint = made.meta.endpoint_url

    def page(response_dict: dict[str, Any], **_: Any) -> None:
        if _is_web_page(response_dict):
            raise ForeignAnswer(foreign_answer(settings, endpoint, f"HTTP {response_dict['status_code']} with "
                                                                  "a web page"))

    def unparseable(exception: BaseException, **_: Any) -> None:
        if isinstance(exception, ResponseParserError):
            raise ForeignAnswer(foreign_answer(settings, endpoint, "with a body botocore cannot parse")) from None

    made.meta.events.register("before-parse", page)
    made.meta.events.register("after-call-error", unparseable)


def session(settings: Settings) -> botocore.session.Session:
    """The task's botocore session for ``settings``: one per identity in the process, its credentials resolved
    (devops/credentials.py)."""
    return credentials.session(settings)


def client(settings: Settings, service: str, boto_session: botocore.session.Session | None = None,
           config: Config | None = None) -> Any:
    require_region(settings)
    made = (boto_session or session(settings)).create_client(
        service, region_name=settings.region or None, endpoint_url=settings.aws_endpoint_url or None,
        config=config or CLIENT_CONFIG,
    )
    _refuse_foreign_answers(made, settings)
    if service == "s3":
        made.meta.events.register_last("before-call.s3", _no_continue_for_small_bodies)
    return made


def _no_continue_for_small_bodies(params: dict[str, Any], **_: Any) -> None:
    """botocore asks S3 for "100 Continue" before every PUT's body (Expect: 100-continue): a round trip of its
    own. A small body (a manifest, the lock, a small dump's part) goes at once: cheaper than the question."""
    size = botocore.utils.determine_content_length(params.get("body"))
    if size is not None and size < SMALL_BODY:
        params["headers"].pop("Expect", None)


class Clients:
    """Clients of one session, one per service, created on first use and shared by threads: a session per
    client would load the SDK's endpoint data again each time. botocore sessions are not thread-safe for
    creating clients: created under a lock, then shared (a client is safe to share)."""

    def __init__(self, settings: Settings, config: Config | None = None):
        self.settings = settings
        self.config = config
        self._session: botocore.session.Session | None = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        with self._lock:
            if self._session is None:
                self._session = session(self.settings)
            if service not in self._clients:
                self._clients[service] = client(self.settings, service, self._session, self.config)
            return self._clients[service]


def identity(settings: Settings, sts: Any = None) -> dict[str, str]:
    """The caller's account and ARN; one clear error when there are no usable credentials."""
    try:
        reply = (sts or client(settings, "sts")).get_caller_identity()
    except NoCredentialsError:
        raise DevopsError(f"no AWS credentials found: set AWS_PROFILE, or sign in with `{hints.inv('login')}`") \
            from None
    except (ClientError, BotoCoreError) as exc:
        raise DevopsError(f"AWS credentials rejected or AWS unreachable: {describe(exc)}") from None
    return {"account": reply["Account"], "arn": reply["Arn"]}


def target_label(settings: Settings, account: str | None = None) -> str:
    """What a task acts on, for its banner: the sandbox's emulator or a real AWS account."""
    if settings.uses_emulator:
        return f"sandbox (AWS emulator at {settings.aws_endpoint_url}, {settings.region})"
    return f"AWS account {account or 'unknown'} ({settings.region})"


def read_secret_json(settings: Settings, secret_arn: str, secrets: Any = None) -> dict[str, Any]:
    """A JSON secret from Secrets Manager; its password is registered so output never shows it.

    `secrets`: a Secrets Manager client to reuse; by default one from ``settings``.
    """
    try:
        raw = (secrets or client(settings, "secretsmanager")).get_secret_value(SecretId=secret_arn)["SecretString"]
    except (ClientError, BotoCoreError) as exc:
        raise DevopsError(f"cannot read secret {secret_arn}: {describe(exc)}") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise DevopsError(f"secret {secret_arn} is not JSON: expected {{\"username\", \"password\"}}") from None
    register_secret(value.get("password"))
    return value


def require_rds_available(settings: Settings, instance: str, rds: Any = None) -> dict[str, Any]:
    """The RDS instance must be `available` (the services and the syncs need it); else one clear line.
    Returns its description (describe_db_instances).

    `rds`: a client to reuse (validate's, with its short timeouts); by default one from ``settings``.
    """
    rds = rds or client(settings, "rds")
    try:
        db = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
        status = db["DBInstanceStatus"]
    except rds.exceptions.DBInstanceNotFoundFault:
        raise DevopsError(f"RDS instance {instance} not found: apply terraform/environments/dev first") from None
    except Exception as exc:  # noqa: BLE001 - boto errors of any kind become one line
        raise DevopsError(f"cannot read RDS instance {instance}: {describe(exc)}") from None
    if status != "available":
        raise DevopsError(f"RDS instance {instance} is {status}, not available: start it "
                          f"(aws rds start-db-instance --db-instance-identifier {instance}) and retry")
    return db


class S3ErrorKind(enum.Enum):
    """What an S3 error means to its caller. Every place that tells one S3 error from another asks
    ``s3_error_kind``, so that "not found" means the same thing everywhere."""

    MISSING_KEY = "missing key"
    MISSING_BUCKET = "missing bucket"
    PRECONDITION_FAILED = "precondition failed"  # a conditional write or delete (If-Match, If-None-Match) lost
    ACCESS_DENIED = "access denied"
    OTHER = "other"  # any other answer, and failures that are no answer of S3's (network, timeouts)


# The codes S3 puts in an error's body. A HEAD's answer has no body: botocore then gives the HTTP status as
# the code ("404", "403", "412"), whose meaning depends on the request (_bare_status below).
_S3_ERROR_CODES = {
    "NoSuchKey": S3ErrorKind.MISSING_KEY,
    "NoSuchBucket": S3ErrorKind.MISSING_BUCKET,
    "PreconditionFailed": S3ErrorKind.PRECONDITION_FAILED,  # 412: the condition does not hold
    "ConditionalRequestConflict": S3ErrorKind.PRECONDITION_FAILED,  # 409: another conditional write is under way
    "AccessDenied": S3ErrorKind.ACCESS_DENIED,
}


def s3_error_kind(exc: BaseException) -> S3ErrorKind:
    """The kind of an S3 error (a botocore exception; anything else is OTHER).

    A missing bucket is never a missing key: GetObject, ListObjectsV2 and the others say NoSuchBucket. Only a
    HEAD cannot tell: HeadObject's bare 404 is a missing key, whether or not the bucket exists (S3 says no
    more), and HeadBucket's bare 404 is a missing bucket.
    """
    if not isinstance(exc, ClientError):
        return S3ErrorKind.OTHER
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _S3_ERROR_CODES:
        return _S3_ERROR_CODES[code]
    return _bare_status(code, exc.operation_name)


def _bare_status(code: str, operation: str) -> S3ErrorKind:
    """The kind of a HEAD's answer, which is a status code alone."""
    if code == "404":
        return S3ErrorKind.MISSING_BUCKET if operation == "HeadBucket" else S3ErrorKind.MISSING_KEY
    if code == "403":
        return S3ErrorKind.ACCESS_DENIED
    if code == "412":
        return S3ErrorKind.PRECONDITION_FAILED
    return S3ErrorKind.OTHER


def describe(exc: Exception) -> str:
    """A one-line description of a boto error (an error's message may run over several lines)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        message = next(iter(str(err.get("Message") or "").strip().splitlines()), "")
        return f"{err.get('Code', 'Error')}: {message}".strip().rstrip(":")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
