"""The checks of `inv validate`: small functions, each registered with the modes it runs in.

A check takes the run's Context and returns a Finding (PASS/WARN/FAIL, a one-line message, an optional
detail for --verbose). Raising is fine: the runner turns an exception into a FAIL line. Checks run
concurrently and print in registration order, so the order here is the order of the report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
import ssl
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import urlsplit

import psycopg2
from botocore.config import Config
from botocore.exceptions import ClientError

from devops import aws
from devops.config import ECR_REPOSITORIES, ECS_SERVICES, Settings
from devops.console import age
from devops.endpoints import NEON_CA_SETTING, PrivateRds, rds_endpoint
from devops.errors import DevopsError
from devops.masking import first_line
from devops.modes import ACTIVE, BOTH, PILOT, mode_of
from devops.postgres import USER_TABLES, parse_url
from devops.sync import sql
from devops.sync.scope import LeftAlone
from devops.sync.store import DUMP_SUFFIX, DumpStore
from devops.terraform import Terraform
from devops.validate.report import CheckStatus, Finding

PASS, WARN, FAIL = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL
DEFAULT_TIMEOUT = 10.0
# A dump older than this (or none at all) is a WARN: the next activation would start from stale data.
RECENT_DUMP_DAYS = 7
# Fast failure over patience: one try more, short timeouts, so a dead endpoint costs seconds, not minutes.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
HTTP_TIMEOUT = 5
DB_CONNECT_TIMEOUT = 5
# S3's answers for a protection the bucket does not have. Any other error (no permission, no answer, an answer
# that is not S3's) says nothing about the bucket: the check fails on it rather than report a lack.
NOT_CONFIGURED = frozenset({"NoSuchLifecycleConfiguration", "NoSuchPublicAccessBlockConfiguration",
                            "ServerSideEncryptionConfigurationNotFoundError", "NoSuchBucketPolicy"})
# Neon in one query, one round trip after the login: the tables the sync reads (postgres.USER_TABLES) and which
# of them this role cannot read (a schema's USAGE first: has_table_privilege errs on a schema it may not use);
# the database's size and Neon's ceiling for the branch in bytes (sql/neon_size_limit.sql); and the figures the
# sync's plan weighs, the objects a restore drops and creates (sql/lockable_objects.sql) and the server's lock
# table (sql/lock_table.sql).
NEON_READ = f"""
SELECT tables.*, pg_database_size(current_database()),
       {sql.NEON_SIZE_LIMIT},
       ({sql.load("lockable_objects", own_schemas=sql.OWN_SCHEMAS)}), lock_table.*
FROM (SELECT count(*),
             coalesce(array_agg(format('%s.%s', t.nspname, t.relname)) FILTER (WHERE NOT CASE
                          WHEN has_schema_privilege(t.nspname, 'USAGE')
                          THEN has_table_privilege(format('%I.%I', t.nspname, t.relname), 'SELECT') END),
                      ARRAY[]::text[])
      FROM ({USER_TABLES}) AS t) AS tables,
     ({sql.load("lock_table")}) AS lock_table
"""


class Answers:
    """Each question asked once per run, its answer (or its error) shared by every check that asks it."""

    def __init__(self) -> None:
        self._asked: dict[Any, Future] = {}
        self._lock = threading.Lock()

    def __call__(self, question: Any, ask: Callable[[], Any]) -> Any:
        with self._lock:
            future, asking = self._asked.get(question), False
            if future is None:
                future = self._asked[question] = Future()
                asking = True
        if asking:
            try:
                future.set_result(ask())
            except BaseException as exc:  # noqa: BLE001 - every asker gets it, as it would have
                future.set_exception(exc)
        return future.result()


@dataclasses.dataclass(frozen=True)
class Context:
    """What every check may use: settings, the Terraform outputs with the mode they give, shared clients, and
    the answers the checks share (kept by with_outputs)."""

    settings: Settings
    outputs: dict[str, Any]
    mode: str
    clients: aws.Clients  # validate's: short timeouts (CLIENT_CONFIG)
    drift: bool = False
    answers: Answers = dataclasses.field(default_factory=Answers)

    def client(self, service: str) -> Any:
        return self.clients(service)

    def rds_available(self, instance: str) -> dict[str, Any]:
        """The instance's description, read once for the instance check and the connection check."""
        return self.answers(("rds", instance),
                            lambda: aws.require_rds_available(self.settings, instance, self.client("rds")))

    def with_outputs(self, outputs: dict[str, Any]) -> "Context":
        return dataclasses.replace(self, outputs=outputs, mode=mode_of(outputs))


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    func: Callable[[Context], Finding]
    modes: tuple[str, ...]
    timeout: float
    only_with_drift: bool = False
    # False: the check reads only Settings, never ctx.outputs, so it may start before Terraform answers.
    needs_outputs: bool = True


REGISTRY: list[Check] = []


def check(name: str, modes: tuple[str, ...] = BOTH, timeout: float = DEFAULT_TIMEOUT,
          only_with_drift: bool = False,
          needs_outputs: bool = True) -> Callable[[Callable[[Context], Finding]], Callable[[Context], Finding]]:
    def register(func: Callable[[Context], Finding]) -> Callable[[Context], Finding]:
        REGISTRY.append(Check(name, func, tuple(modes), timeout, only_with_drift, needs_outputs))
        return func

    return register


def checks_for(mode: str, drift: bool) -> list[Check]:
    return [c for c in REGISTRY if mode in c.modes and (drift or not c.only_with_drift)]


def early_checks(drift: bool) -> list[Check]:
    """Checks that run in every mode and need no Terraform output: they can start before the mode is known."""
    return [c for c in checks_for(PILOT, drift) if set(BOTH) <= set(c.modes) and not c.needs_outputs]


# --------------------------------------------------------------------------------------------------
# Both modes


def _ecr_check(short: str) -> Callable[[Context], Finding]:
    def run(ctx: Context) -> Finding:
        name = f"{ctx.settings.project_name}/{short}"
        ecr = ctx.client("ecr")
        try:
            ecr.describe_repositories(repositoryNames=[name])
        except ecr.exceptions.RepositoryNotFoundException:
            return Finding(FAIL, f"ECR repo {name} not found")
        count = sum(len(page.get("imageDetails", []))
                    for page in ecr.get_paginator("describe_images").paginate(repositoryName=name))
        return Finding(PASS, f"ECR repo {name} exists ({count} images)")

    return run


for _short in ECR_REPOSITORIES:
    check(f"ECR {_short}", needs_outputs=False)(_ecr_check(_short))


def _bucket(ctx: Context) -> str:
    # Settings derives the name as Terraform does (from the same project_name), so no output is needed.
    return ctx.settings.bucket_name


@check("S3 db-backups bucket", needs_outputs=False)
def bucket_exists(ctx: Context) -> Finding:
    bucket = _bucket(ctx)
    try:
        ctx.client("s3").head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001
        return Finding(FAIL, f"S3 bucket {bucket} not found or not readable ({aws.describe(exc)})")
    return Finding(PASS, f"S3 bucket {bucket} exists")


@check("S3 db-backups protections", needs_outputs=False)
def bucket_protections(ctx: Context) -> Finding:
    """Lifecycle rule, all four public-access blocks, default encryption, and a TLS-only policy."""
    s3, bucket = ctx.client("s3"), _bucket(ctx)

    def holds(call: Callable[[], bool]) -> bool:
        try:
            return call()
        except ClientError as exc:  # "no such configuration" is an error code here
            if exc.response.get("Error", {}).get("Code") in NOT_CONFIGURED:
                return False
            raise

    probes = {
        "lifecycle": lambda: any(rule.get("Status") == "Enabled" for rule in
                                 s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])),
        "public-access blocks": lambda: all(s3.get_public_access_block(Bucket=bucket)
                                            .get("PublicAccessBlockConfiguration", {}).get(key) for key in
                                            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                             "RestrictPublicBuckets")),
        "encryption": lambda: bool(s3.get_bucket_encryption(Bucket=bucket)
                                   .get("ServerSideEncryptionConfiguration", {}).get("Rules")),
        "TLS-only policy": lambda: _denies_plain_http(s3.get_bucket_policy(Bucket=bucket).get("Policy", "{}")),
    }
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:  # side by side: one round trip, not four
        held = dict(zip(probes, pool.map(holds, probes.values())))
    present = [label for label, ok in held.items() if ok]
    missing = [label for label, ok in held.items() if not ok]
    if missing:
        return Finding(WARN, f"S3 bucket {bucket} lacks: {', '.join(missing)}",
                      f"present: {', '.join(present) or 'none'}")
    return Finding(PASS, f"S3 bucket {bucket}: {', '.join(present)}")


def _denies_plain_http(policy: str) -> bool:
    statements = json.loads(policy).get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        condition = statement.get("Condition", {}).get("Bool", {})
        if statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
            return True
    return False


@check("Recent dump", needs_outputs=False)
def recent_dump(ctx: Context) -> Finding:
    bucket = _bucket(ctx)
    found = [item for item in DumpStore(ctx.client("s3"), bucket).objects() if item["Key"].endswith(DUMP_SUFFIX)]
    newest = max(found, key=lambda item: item["LastModified"], default=None)
    if newest is None:
        return Finding(WARN, f"No dumps in s3://{bucket} yet (run inv sync.neon-to-rds or sync.rds-to-neon)")
    elapsed = dt.datetime.now(dt.timezone.utc) - newest["LastModified"]
    text = f"newest dump {newest['Key']} is {age(elapsed.total_seconds())} old"
    if elapsed > dt.timedelta(days=RECENT_DUMP_DAYS):
        return Finding(WARN, f"No dump in the last {RECENT_DUMP_DAYS} days: {text}")
    return Finding(PASS, f"Recent dump: {text}")


@check("RDS instance", needs_outputs=False)
def rds_instance(ctx: Context) -> Finding:
    instance = ctx.settings.rds_instance_id
    try:
        ctx.rds_available(instance)
    except DevopsError as exc:
        return Finding(FAIL, str(exc))
    return Finding(PASS, f"RDS instance {instance} is available")


@check("RDS connection")
def rds_connection(ctx: Context) -> Finding:
    try:
        endpoint = rds_endpoint(ctx.settings, ctx.outputs, secrets=ctx.client("secretsmanager"),
                                available=ctx.rds_available)
    except PrivateRds:
        return Finding(WARN, "RDS login: not reachable from here (private): run `inv validate --on ecs` to check it "
                            "from the VPC, or reach it through a tunnel and set rds_address")
    try:
        conn = endpoint.connect(timeout=DB_CONNECT_TIMEOUT)
    except DevopsError as exc:  # one line naming RDS and, for TLS, what to set (Endpoint.refusal)
        return Finding(FAIL, str(exc))
    except Exception as exc:  # noqa: BLE001
        return Finding(FAIL, f"RDS connection to {endpoint.where()} failed: {first_line(exc)}")
    try:
        conn.autocommit = True  # psycopg2 sends no BEGIN first: one round trip, not two
        with conn.cursor() as cur:
            cur.execute("select 1")
            cur.fetchone()
    finally:
        conn.close()
    return Finding(PASS, f"RDS answers select 1 as {endpoint.user} ({endpoint.where()})")


@check("Neon", needs_outputs=False)
def neon(ctx: Context) -> Finding:
    """Neon as the sync reaches it (its URL, the direct host, verified TLS), and whether its role can read what
    the sync reads: one login, one query (NEON_READ)."""
    settings = ctx.settings
    try:
        endpoint, _ = parse_url(settings.neon_database_url, "Neon", "NEON_DATABASE_URL",
                                ca_file=settings.neon_ca_file, ca_setting=NEON_CA_SETTING)
    except DevopsError as exc:  # unset or malformed: what to export
        return Finding(FAIL, str(exc))
    try:
        conn = endpoint.connect(timeout=DB_CONNECT_TIMEOUT)
    except DevopsError as exc:  # one line naming Neon's host and libpq's first line (Endpoint.refusal)
        return Finding(FAIL, f"{exc}; check NEON_DATABASE_URL ({endpoint.masked()})")
    try:
        conn.autocommit = True  # psycopg2 sends no BEGIN first: the query is the one round trip
        with conn.cursor() as cur:
            # What the sync leaves alone (devops.exclude_schemas) is not what it reads.
            cur.execute(LeftAlone.of(settings.exclude_schemas, settings.exclude_extensions).fill(NEON_READ))
            tables, unreadable, size, ceiling, objects, max_locks, slots = cur.fetchone()
        encrypted, version = conn.info.ssl_in_use, conn.server_version
    except psycopg2.Error as exc:
        return Finding(FAIL, f"Neon at {endpoint.where()}: cannot read what the sync reads: {first_line(exc)}")
    finally:
        conn.close()
    detail = (f"PostgreSQL {version // 10000}.{version % 10000}; {_size(size, ceiling)}; {objects:,} objects "
              f"against a lock table of {max_locks * slots:,} (max_locks_per_transaction {max_locks} x {slots} slots)")
    if unreadable:
        return Finding(FAIL, f"Neon: {endpoint.user} cannot read {len(unreadable)} of the {tables} tables the sync "
                            f"dumps ({', '.join(unreadable[:3])}{', ...' if len(unreadable) > 3 else ''}): grant "
                            "it SELECT on them and USAGE on their schemas", detail)
    sslmode = dict(endpoint.params).get("sslmode")
    if sslmode not in ("verify-full", "verify-ca") or not encrypted:
        how = "over TLS that is not verified" if encrypted else "without TLS"
        return Finding(WARN, f"Neon answers as {endpoint.user} at {endpoint.where()} {how} (NEON_DATABASE_URL sets "
                             f"sslmode={sslmode}): without sslmode in the URL the tasks verify Neon's certificate",
                       detail)
    return Finding(PASS, f"Neon answers as {endpoint.user} over verified TLS at {endpoint.where()} "
                         f"({named_host(settings.neon_database_url, endpoint.host)}) and can read its {tables} tables",
                   detail)


def named_host(url: str, direct: str) -> str:
    """Which host NEON_DATABASE_URL names: the direct one, or a pooler's (postgres.parse_url gives the tasks its
    direct host: pg_dump cannot run through PgBouncer)."""
    named = urlsplit(url.strip()).hostname
    if named == direct:
        return "NEON_DATABASE_URL names the direct host"
    return f"NEON_DATABASE_URL names the pooled host {named}: the tasks use the direct one"


def _megabytes(size: int) -> str:
    megabytes = size / 2 ** 20
    return f"{megabytes:,.0f} MB" if megabytes >= 100 else f"{megabytes:.1f} MB"


def _size(size: int, ceiling: int | None) -> str:
    """The database's size against Neon's ceiling for the branch (neon.max_cluster_size, in bytes; -1: none)."""
    if ceiling is None:
        return f"database {_megabytes(size)}, no ceiling known (the server has no neon.max_cluster_size)"
    if ceiling < 0:
        return f"database {_megabytes(size)}, no ceiling (neon.max_cluster_size is -1)"
    return (f"database {_megabytes(size)} of a {_megabytes(ceiling)} ceiling ({size / ceiling:.0%}, "
            "neon.max_cluster_size)")


@check("VPC")
def vpc(ctx: Context) -> Finding:
    vpc_id = ctx.outputs.get("vpc_id")
    if not vpc_id:
        return Finding(FAIL, "VPC not found in Terraform outputs")
    state = ctx.client("ec2").describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["State"]
    if state != "available":
        return Finding(FAIL, f"VPC {vpc_id} state: {state}")
    return Finding(PASS, f"VPC {vpc_id} is available")


# --------------------------------------------------------------------------------------------------
# Active mode


@check("ECS cluster", modes=(ACTIVE,))
def ecs_cluster(ctx: Context) -> Finding:
    name = ctx.outputs.get("ecs_cluster_name")
    if not name:
        return Finding(FAIL, "ECS cluster not in Terraform outputs")
    clusters = ctx.client("ecs").describe_clusters(clusters=[name])["clusters"]
    status = clusters[0]["status"] if clusters else "MISSING"
    if status != "ACTIVE":
        return Finding(FAIL, f"ECS cluster {name} status: {status}")
    return Finding(PASS, f"ECS cluster {name} is active")


def _ecs_service_check(short: str) -> Callable[[Context], Finding]:
    def run(ctx: Context) -> Finding:
        cluster, service = ctx.outputs.get("ecs_cluster_name"), ctx.outputs.get(f"{short}_service_name")
        if not cluster or not service:
            return Finding(FAIL, f"ECS {short}: service not in Terraform outputs")
        services = ctx.client("ecs").describe_services(cluster=cluster, services=[service])["services"]
        if not services or services[0]["status"] != "ACTIVE":
            return Finding(FAIL, f"ECS {service} status: {services[0]['status'] if services else 'MISSING'}")
        running, desired = services[0]["runningCount"], services[0]["desiredCount"]
        text = f"ECS {service}: {running}/{desired} tasks running"
        if desired == 0:
            return Finding(WARN, f"{text} (scaled to zero)")
        if running < desired:
            return Finding(WARN, text)
        return Finding(PASS, text)

    return run


for _short in ECS_SERVICES:
    check(f"ECS {_short}", modes=(ACTIVE,))(_ecs_service_check(_short))


@check("ALB targets", modes=(ACTIVE,))
def alb_targets(ctx: Context) -> Finding:
    elb = ctx.client("elbv2")
    name = f"{ctx.settings.name_prefix}-alb"
    try:
        arn = elb.describe_load_balancers(Names=[name])["LoadBalancers"][0]["LoadBalancerArn"]
    except elb.exceptions.LoadBalancerNotFoundException:
        return Finding(FAIL, f"ALB {name} not found")
    groups = elb.describe_target_groups(LoadBalancerArn=arn)["TargetGroups"]
    states: dict[str, list[str]] = {}
    for group in groups:
        for target in elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]:
            states.setdefault(target["TargetHealth"]["State"], []).append(group["TargetGroupName"])
    detail = ", ".join(f"{state}: {len(names)}" for state, names in sorted(states.items()))
    if not states:
        # No registered targets is PASS: ECS registers a task's IP when it runs, so "no targets" means
        # "no running tasks", which the ECS service checks already report (WARN). moto never registers
        # any (its ECS runs no containers), so in the sandbox this is the normal answer.
        return Finding(PASS, f"ALB {name}: {len(groups)} target groups, no registered targets")
    unhealthy = {s: n for s, n in states.items() if s != "healthy"}
    if unhealthy:
        return Finding(WARN, f"ALB {name} targets not all healthy ({detail})",
                      "; ".join(f"{s}: {', '.join(n)}" for s, n in unhealthy.items()))
    return Finding(PASS, f"ALB {name}: {len(states['healthy'])} healthy targets in {len(groups)} target groups")


@check("ALB health URL", modes=(ACTIVE,))
def alb_health(ctx: Context) -> Finding:
    dns = ctx.outputs.get("alb_dns_name")
    if not dns:
        return Finding(FAIL, "ALB DNS name not in Terraform outputs")
    https = bool(ctx.outputs.get("alb_https"))
    scheme = "https" if https else "http"
    url = f"{scheme}://{dns}/api/health"
    override = ctx.settings.alb_address_override()
    host, port = override or (dns, 443 if https else 80)
    via = f" via {host}:{port}" if override else ""
    if https:
        # Like the original bash script's `curl -k`: the dev ALB's certificate names the site, not the ALB's DNS name.
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=HTTP_TIMEOUT, context=ssl._create_unverified_context())  # noqa: S323
    else:
        conn = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", "/api/health", headers={"Host": dns})
        code = conn.getresponse().status
    except OSError as exc:
        return Finding(WARN, f"ALB health check: {url}{via} unreachable ({exc.strerror or exc})")
    finally:
        conn.close()
    if code != 200:
        return Finding(WARN, f"ALB health check: {url}{via} answered {code}")
    return Finding(PASS, f"ALB health check: {url}{via} answered 200")


@check("CloudFront", modes=(ACTIVE,))
def cloudfront(ctx: Context) -> Finding:
    dist = ctx.outputs.get("cloudfront_distribution_id")
    if not dist:
        return Finding(FAIL, "CloudFront distribution not in Terraform outputs")
    status = ctx.client("cloudfront").get_distribution(Id=dist)["Distribution"]["Status"]
    if status != "Deployed":
        return Finding(WARN, f"CloudFront {dist}: {status}")
    return Finding(PASS, f"CloudFront {dist}: {status}")


@check("Service discovery", modes=(ACTIVE,))
def service_discovery(ctx: Context) -> Finding:
    sd = ctx.client("servicediscovery")
    name = ctx.outputs.get("service_discovery_namespace") or ctx.settings.service_discovery_namespace
    namespace_id = ctx.outputs.get("service_discovery_namespace_id")
    if not namespace_id:
        return Finding(WARN, f"Service discovery namespace {name} not in Terraform outputs")
    services = sd.list_services(Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id]}])["Services"]
    registered = {s["Name"]: len(sd.list_instances(ServiceId=s["Id"]).get("Instances", [])) for s in services}
    missing = [s for s in ECS_SERVICES if s not in registered]
    detail = ", ".join(f"{n}={c} instance(s)" for n, c in sorted(registered.items()))
    if missing:
        return Finding(WARN, f"Service discovery {name}: no registration for {', '.join(missing)}", detail)
    # Instances register as ECS tasks start (none in the sandbox: moto runs no containers); their count
    # is detail, the running tasks are the ECS checks' business.
    return Finding(PASS, f"Service discovery namespace {name}: {len(registered)} services registered", detail)


# --------------------------------------------------------------------------------------------------
# --drift


@check("Terraform drift", timeout=600, only_with_drift=True)
def drift(ctx: Context) -> Finding:
    flag = f"dev_activated={'true' if ctx.mode == ACTIVE else 'false'}"
    changed: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        if message.get("type") == "planned_change":
            change = message.get("change", {})
            changed.append(f"{change.get('resource', {}).get('addr', '?')}: {change.get('action', '?')}")

    # Read-only: no state lock, so a validation never blocks (or is blocked by) an apply's lock holder.
    if Terraform(ctx.settings).plan({"dev_activated": ctx.mode == ACTIVE}, lock=False, progress=collect):
        return Finding(WARN, f"Terraform plan ({flag}) shows drift: {len(changed)} change(s)"
                            + (f", e.g. {changed[0]}" if changed else ""), "; ".join(changed))
    return Finding(PASS, f"Terraform plan ({flag}): no drift")
