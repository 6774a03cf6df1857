"""`inv validate` against the sandbox: healthy in both modes, then one thing broken at a time.

Every test runs the real task (`python -m invoke validate`) and restores what it broke, so the sandbox is
back in pilot light, healthy, when the module ends.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import botocore
import pytest

from devops.config import REPO_ROOT, ECR_REPOSITORIES, ECS_SERVICES
from devops.postgres import parse_url
from devops.sync.database import Database
from tests.helpers import INV, secrets_of

PILOT_CHECKS = ["AWS credentials", "Terraform state", *(f"ECR {r}" for r in ECR_REPOSITORIES),
                "S3 db-backups bucket", "S3 db-backups protections", "Recent dump", "RDS instance",
                "RDS connection", "Neon", "VPC"]
ACTIVE_CHECKS = [*PILOT_CHECKS, "ECS cluster", *(f"ECS {s}" for s in ECS_SERVICES), "ALB targets",
                 "ALB health URL", "CloudFront", "Service discovery"]
FAKE_DUMP = "neon-dumps/9999-validate-test.dump"


def validate(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*INV, "validate", *args], env=env, capture_output=True, text=True, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def report(env: dict, *args: str) -> tuple[dict, int]:
    result = validate(env, "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout), result.returncode


def statuses(payload: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in payload["checks"]}


def messages(payload: dict) -> dict[str, str]:
    return {check["name"]: check["message"] for check in payload["checks"]}


def status_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("[")]


def assert_only(payload: dict, expected: dict[str, str]) -> None:
    """These checks have these statuses; every other check passes."""
    got = statuses(payload)
    assert {name: got[name] for name in expected} == expected, payload
    assert all(status == "PASS" for name, status in got.items() if name not in expected), payload


@pytest.fixture(scope="module", autouse=True)
def recent_dump(sandbox, sandbox_settings):
    """A dump made just now, so the recent-dump check passes whichever tests ran before."""
    s3 = sandbox.client("s3")
    s3.put_object(Bucket=sandbox_settings.bucket_name, Key=FAKE_DUMP, Body=b"PGDMP")
    yield
    s3.delete_object(Bucket=sandbox_settings.bucket_name, Key=FAKE_DUMP)


# --------------------------------------------------------------------------------------------------
# Pilot light


def test_healthy_pilot_light_passes_every_check(sandbox_env, sandbox_settings):
    result = validate(sandbox_env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "DEV ENVIRONMENT VALIDATION" in out and f"Region: {sandbox_settings.region}" in out
    assert "Target: sandbox (AWS emulator at http://127.0.0.1:" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == len(PILOT_CHECKS) and all(line.startswith("[PASS]") for line in lines), out
    assert "AWS credentials valid (account " in lines[0]
    assert lines[1] == "[PASS] Dev infrastructure is in Pilot Light mode"
    # Neon as the sync reaches it: the URL's host, over TLS verified with the sandbox's CA, every table readable.
    neon = urlsplit(sandbox_env["NEON_DATABASE_URL"])
    assert lines[PILOT_CHECKS.index("Neon")] == (
        f"[PASS] Neon answers as neondb_owner over verified TLS at {neon.hostname}:{neon.port}/neondb (NEON_DATABASE_URL "
        f"names the direct host) and can read its {neon_tables(sandbox_env)} tables")
    assert "VALIDATION SUMMARY" in out and "Mode:      Pilot Light" in out
    assert f"Passed:   {len(PILOT_CHECKS)}" in out and "Warnings: 0" in out and "Failed:   0" in out
    assert out.rstrip().endswith("Dev Pilot Light components are healthy")
    assert "Traceback" not in result.stderr


def test_json_report_has_every_check_in_order(sandbox_env):
    payload, code = report(sandbox_env)
    assert code == 0
    assert payload["mode"] == "pilot-light" and payload["status"] == "pass"
    assert [c["name"] for c in payload["checks"]] == PILOT_CHECKS
    assert all(set(c) == {"name", "status", "message", "detail", "seconds"} for c in payload["checks"])
    assert payload["summary"] == {"mode": "Pilot Light", "passed": len(PILOT_CHECKS), "warnings": 0, "failed": 0,
                                  "result": "Dev Pilot Light components are healthy"}


def test_verbose_shows_detail_and_duration(sandbox_env):
    result = validate(sandbox_env, "--verbose")
    assert result.returncode == 0
    # The account's ARN is the credentials check's detail; every check line is followed by its seconds.
    assert "arn:aws:" in result.stdout
    lines = result.stdout.splitlines()
    timed = [i for i, line in enumerate(lines) if re.fullmatch(r" {7}(.*; )?\d+\.\d\ds", line)]
    # One detail-and-seconds line per check, each right under that check's status line.
    assert len(timed) == len(PILOT_CHECKS), result.stdout
    assert all(re.match(r"\[(PASS|WARN|FAIL)\] ", lines[i - 1]) for i in timed), result.stdout


def test_secrets_are_never_printed(sandbox_env, sandbox_state):
    result = validate(sandbox_env, "--verbose", "--json")
    # Validate ran to its end: every check printed and passed (the RDS connection's logged in with the password),
    # each with its detail line, then the summary; the report is on stdout.
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    checked = [line for line in lines if line.startswith("[")]
    assert len(checked) == len(PILOT_CHECKS) and all(line.startswith("[PASS]") for line in checked), result.stderr
    assert any(line.startswith("[PASS] RDS answers select 1 as ") for line in checked), result.stderr
    assert len([line for line in lines if re.fullmatch(r" {7}(.*; )?\d+\.\d\ds", line)]) == len(PILOT_CHECKS)
    assert result.stderr.rstrip().endswith("Dev Pilot Light components are healthy"), result.stderr
    assert [c["name"] for c in json.loads(result.stdout)["checks"]] == PILOT_CHECKS
    for secret in (sandbox_state["rds"]["password"], *secrets_of(sandbox_env)):  # RDS's, and Neon's from its URL
        assert secret not in result.stdout + result.stderr


def test_no_credentials_is_one_fail_line(sandbox_env):
    env = {k: v for k, v in sandbox_env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                             "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true")
    result = validate(env)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert lines == ["[FAIL] no AWS credentials found for AWS profile 'default': set AWS_PROFILE to a profile of "
                     "~/.aws/config, or sign in with `inv login`"]
    assert "Failed:   1" in result.stdout
    assert "Traceback" not in result.stderr


def test_unreadable_state_is_one_fail_line(sandbox_env, tmp_path):
    env = {**sandbox_env, "TF_DATA_DIR": str(tmp_path / "no-terraform-here")}
    result = validate(env)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(fails) == 1 and fails[0].startswith("[FAIL] Cannot read Terraform state"), result.stdout
    assert "Traceback" not in result.stderr


def test_an_unknown_region_is_one_fail_line_before_any_request(sandbox, sandbox_env):
    network = sandbox.network()
    network.reset()
    result = validate({**sandbox_env, "AWS_REGION": "xx-nowhere-1"})
    assert result.returncode == 1
    assert status_lines(result) == ["[FAIL] unknown AWS region 'xx-nowhere-1': no AWS partition in botocore "
                                    f"{botocore.__version__} has it; check AWS_REGION (a region name looks like "
                                    "us-east-1), or, for a region newer than botocore, also set "
                                    "INVOKE_DEVOPS_NEW_REGION=xx-nowhere-1"], result.stdout
    assert "Failed:   1" in result.stdout and "Passed:   0" in result.stdout
    assert "html" not in (result.stdout + result.stderr).lower() and "Traceback" not in result.stderr
    counts = network.counts()
    assert counts["aws"].connections == counts["neon"].connections == counts["rds"].connections == 0


def test_a_malformed_region_is_one_fail_line(sandbox_env):
    result = validate({**sandbox_env, "AWS_REGION": "us-east-1a"})
    assert result.returncode == 1
    assert status_lines(result) == ["[FAIL] AWS region 'us-east-1a' is not a region name: check AWS_REGION (a region "
                                    "name looks like us-east-1)"], result.stdout


def test_an_answer_that_is_not_awss_is_one_fail_line_naming_the_endpoint(sandbox_env, sandbox_state):
    """AWS_ENDPOINT_URL at a web server (the app stand-in, which answers a POST with a 501 page): the first
    request says so, in one line, and validate stops there."""
    web = f"http://127.0.0.1:{sandbox_state['app']['port']}"
    result = validate({**sandbox_env, "AWS_ENDPOINT_URL": web})
    assert result.returncode == 1
    assert status_lines(result) == [f"[FAIL] {web} answered HTTP 501 with a web page, not as an AWS API does: check "
                                    "AWS_ENDPOINT_URL (it must lead to AWS or an emulator of it, such as the sandbox's: "
                                    "`inv sandbox.status`) and the region us-east-1"], result.stdout
    assert "<" not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_outputs_come_from_the_cache_while_the_state_is_unchanged(sandbox_env, sandbox_state):
    """One `terraform output -json` per state: later runs read the cache (a HEAD shows the ETag unchanged).
    The cache is private, holds no secret, and a cache at another ETag is not used."""
    cache = Path(sandbox_env["TF_DATA_DIR"]) / "devops-outputs.json"
    cache.unlink(missing_ok=True)
    assert validate(sandbox_env).returncode == 0
    assert cache.stat().st_mode & 0o777 == 0o600
    text = cache.read_text()
    for secret in (sandbox_state["neon"]["password"], sandbox_state["rds"]["password"],
                   sandbox_state["rds"]["superuser_password"]):
        assert secret not in text
    entry = json.loads(text)
    # Outputs that differ from the state's show whether the cache was read: the VPC check fails on them.
    entry["outputs"]["vpc_id"] = "vpc-from-the-cache"
    cache.write_text(json.dumps(entry))
    cached, code = report(sandbox_env)
    assert code == 1 and statuses(cached)["VPC"] == "FAIL" and "vpc-from-the-cache" in json.dumps(cached)
    # Another ETag (the state written since): Terraform reads the state again, and the cache follows it.
    # The checks that started on the cache's outputs (before the HEAD answered) run again on the state's.
    cache.write_text(json.dumps({**entry, "etag": '"an-older-state"'}))
    fresh, code = report(sandbox_env)
    assert code == 0 and statuses(fresh)["VPC"] == "PASS", fresh
    assert "vpc-from-the-cache" not in json.dumps(fresh)
    assert json.loads(cache.read_text())["etag"] == entry["etag"]
    # Outputs read last time in the other mode: the report is the state's mode's, every check of it passing.
    activated = {**entry["outputs"], "dev_activated": True, "ecs_cluster_name": "cluster-from-the-cache"}
    cache.write_text(json.dumps({**entry, "etag": '"an-older-state"', "outputs": activated}))
    fresh, code = report(sandbox_env)
    assert code == 0 and list(statuses(fresh)) == PILOT_CHECKS, fresh


def test_missing_ecr_repository_fails_its_check(sandbox, sandbox_env, sandbox_settings):
    ecr = sandbox.client("ecr")
    name = sandbox_settings.ecr_repository_names[0]
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    policy = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    ecr.delete_repository(repositoryName=name, force=True)
    try:
        payload, code = report(sandbox_env)
        assert code == 1
        assert_only(payload, {f"ECR {ECR_REPOSITORIES[0]}": "FAIL"})
    finally:
        ecr.create_repository(repositoryName=name, imageTagMutability=repo["imageTagMutability"],
                              imageScanningConfiguration=repo["imageScanningConfiguration"], tags=tags)
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=policy)
    assert report(sandbox_env)[1] == 0


def test_stopped_rds_instance_fails(sandbox, sandbox_env, sandbox_settings):
    rds = sandbox.client("rds")
    rds.stop_db_instance(DBInstanceIdentifier=sandbox_settings.rds_instance_id)
    try:
        payload, code = report(sandbox_env)
        assert code == 1
        # The connection check resolves RDS as the sync does, which refuses an instance that is not available.
        assert_only(payload, {"RDS instance": "FAIL", "RDS connection": "FAIL"})
        message = {c["name"]: c["message"] for c in payload["checks"]}["RDS instance"]
        # The same line the sync and activate print (devops.aws.require_rds_available): one home for the check.
        instance = sandbox_settings.rds_instance_id
        assert message.startswith(f"RDS instance {instance} is stopped, not available: start it"), message
        assert f"start-db-instance --db-instance-identifier {instance}" in message
    finally:
        rds.start_db_instance(DBInstanceIdentifier=sandbox_settings.rds_instance_id)
    assert report(sandbox_env)[1] == 0


def test_bucket_without_encryption_warns(sandbox, sandbox_env, sandbox_settings):
    s3, bucket = sandbox.client("s3"), sandbox_settings.bucket_name
    saved = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    s3.delete_bucket_encryption(Bucket=bucket)
    try:
        payload, code = report(sandbox_env)
        assert code == 0
        assert_only(payload, {"S3 db-backups protections": "WARN"})
        assert "lacks: encryption" in {c["name"]: c["message"] for c in payload["checks"]}["S3 db-backups protections"]
        assert payload["summary"]["result"] == "Dev environment has warnings - review before activation"
        assert report(sandbox_env, "--strict")[1] == 1
    finally:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=saved)
    assert report(sandbox_env, "--strict")[1] == 0


def test_no_dump_warns(sandbox, sandbox_env, sandbox_settings):
    """With no dump in the bucket (the sync tests' dumps set aside for the test), the dump check warns."""
    s3, bucket = sandbox.client("s3"), sandbox_settings.bucket_name
    dumps = [o["Key"] for p in ("neon-dumps/", "rds-dumps/")
             for o in s3.list_objects_v2(Bucket=bucket, Prefix=p).get("Contents", []) if o["Key"].endswith(".dump")]
    for key in dumps:
        s3.copy_object(Bucket=bucket, Key=f"validate-aside/{key}", CopySource={"Bucket": bucket, "Key": key})
        s3.delete_object(Bucket=bucket, Key=key)
    try:
        payload, code = report(sandbox_env)
        assert code == 0
        assert_only(payload, {"Recent dump": "WARN"})
        assert "No dumps in s3://" in {c["name"]: c["message"] for c in payload["checks"]}["Recent dump"]
    finally:
        for key in dumps:
            s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": f"validate-aside/{key}"})
            s3.delete_object(Bucket=bucket, Key=f"validate-aside/{key}")
    assert report(sandbox_env)[1] == 0


def test_stopped_rds_server_fails_the_connection(sandbox, sandbox_env):
    cluster = sandbox.cluster("rds")
    cluster.stop()
    try:
        payload, code = report(sandbox_env)
        assert code == 1
        assert_only(payload, {"RDS connection": "FAIL"})
    finally:
        cluster.start()
    assert report(sandbox_env)[1] == 0


# --------------------------------------------------------------------------------------------------
# Neon, where the data lives in pilot light


def neon_tables(env: dict) -> int:
    """The tables the sync reads in the Neon stand-in, as the sync counts them."""
    database = neon_database(env)
    try:
        return len(database.counts()[0])
    finally:
        database.close()


def neon_database(env: dict) -> Database:
    """Neon as the sync reads it (devops.sync.database), through the task's URL and CA."""
    endpoint, _ = parse_url(env["NEON_DATABASE_URL"], "Neon", "NEON_DATABASE_URL",
                            ca_file=env["INVOKE_DEVOPS_NEON_CA_FILE"])
    return Database("neon", endpoint)


def superuser_sql(sandbox, statement: str) -> None:
    conn = sandbox.server("neon").connect(as_superuser=True, database="neondb")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_neon_unset_is_one_fail_line_saying_what_to_export(sandbox_env):
    env = {k: v for k, v in sandbox_env.items() if k != "NEON_DATABASE_URL"}
    result = validate(env)
    assert result.returncode == 1
    fails = [line for line in status_lines(result) if not line.startswith("[PASS]")]
    assert fails == ["[FAIL] NEON_DATABASE_URL is not set: export it (postgresql://<user>:<password>@<host>/<dbname>, "
                     "as the Neon console's Connect dialog shows it; from Vercel's Neon integration, its unpooled "
                     "URL: `export NEON_DATABASE_URL=\"$DATABASE_URL_UNPOOLED\"`)"], result.stdout


def test_neon_with_a_wrong_password_fails_naming_the_host_never_a_password(sandbox_env):
    url = urlsplit(sandbox_env["NEON_DATABASE_URL"])
    wrong = "not-the-neon-password-7f3a"
    netloc = f"{url.username}:{quote(wrong)}@{url.hostname}:{url.port}"
    result = validate({**sandbox_env, "NEON_DATABASE_URL": urlunsplit(url._replace(netloc=netloc))})
    assert result.returncode == 1
    [line] = [line for line in status_lines(result) if not line.startswith("[PASS]")]
    assert line.startswith(f"[FAIL] cannot connect to Neon at {url.hostname}:{url.port}/neondb: "), line
    assert 'password authentication failed for user "neondb_owner"' in line, line
    assert line.endswith(f"; check NEON_DATABASE_URL (postgresql://****@{url.hostname}:{url.port}/neondb)"), line
    for secret in (wrong, *secrets_of(sandbox_env)):
        assert secret not in result.stdout + result.stderr


def test_neon_over_tls_that_is_not_verified_warns(sandbox_env):
    payload, code = report({**sandbox_env, "NEON_DATABASE_URL": sandbox_env["NEON_DATABASE_URL"] + "?sslmode=require"})
    assert code == 0
    assert_only(payload, {"Neon": "WARN"})
    assert "over TLS that is not verified (NEON_DATABASE_URL sets sslmode=require)" in messages(payload)["Neon"]


def test_neon_with_a_table_its_role_cannot_read_fails(sandbox, sandbox_env):
    """A table the sync's pg_dump could not read (another role's, never granted): validate names it."""
    superuser_sql(sandbox, "CREATE TABLE public.validate_not_granted (id int)")
    try:
        payload, code = report(sandbox_env)
    finally:
        superuser_sql(sandbox, "DROP TABLE public.validate_not_granted")
    assert code == 1
    assert_only(payload, {"Neon": "FAIL"})
    assert messages(payload)["Neon"] == (
        f"Neon: neondb_owner cannot read 1 of the {neon_tables(sandbox_env) + 1} tables the sync dumps "
        "(public.validate_not_granted): grant it SELECT on them and USAGE on their schemas")


def test_verbose_shows_neons_size_and_objects_with_the_figures_the_sync_reads(sandbox, sandbox_env):
    database = neon_database(sandbox_env)
    try:
        database.read_server()
        objects, table = database.counts()[1], database.lock_table
    finally:
        database.close()
    # The same figures as the sync's plan: its objects (sql/lockable_objects.sql) and lock table (sql/lock_table.sql).
    lock_table = (f"{objects:,} objects against a lock table of {table.capacity:,} "
                  f"(max_locks_per_transaction {table.max_locks} x {table.slots} slots)")
    result = validate(sandbox_env, "--verbose")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("[PASS] Neon answers as ")]
    detail = lines[at + 1]
    # The stand-in's ceiling, shown as Neon shows it ("512MB", sandbox_neon_max_cluster_size): the size against it.
    assert re.match(r" {7}PostgreSQL \d+\.\d+; database \d+\.\d MB of a 512 MB ceiling \(\d+%, "
                    r"neon\.max_cluster_size\); ", detail), detail
    assert f"; {lock_table}; " in detail, detail
    # A project on a bigger plan.
    superuser_sql(sandbox, "ALTER DATABASE neondb SET neon.max_cluster_size = '10GB'")
    try:
        payload, code = report(sandbox_env, "--verbose")
    finally:
        superuser_sql(sandbox, "ALTER DATABASE neondb RESET neon.max_cluster_size")
    assert code == 0
    detail = {c["name"]: c["detail"] for c in payload["checks"]}["Neon"]
    assert re.search(r"; database \d+\.\d MB of a 10,240 MB ceiling \(\d+%, neon\.max_cluster_size\); ", detail), \
        detail


# --------------------------------------------------------------------------------------------------
# Active mode (one apply in, one apply out: about two minutes)


@pytest.fixture(scope="module")
def active(sandbox):
    terraform = sandbox.terraform()
    terraform.apply(variables={"dev_activated": True})
    try:
        yield sandbox
    finally:
        terraform.apply(variables={"dev_activated": False})


def _outputs(sandbox) -> dict:
    return sandbox.terraform().outputs()


def test_healthy_active_passes_every_check(active, sandbox_env):
    # The apply wrote the state: the pilot-light outputs cached before it are not used.
    cache = Path(sandbox_env["TF_DATA_DIR"]) / "devops-outputs.json"
    before = json.loads(cache.read_text())["etag"] if cache.exists() else None
    result = validate(sandbox_env)
    assert json.loads(cache.read_text())["etag"] != before
    assert json.loads(cache.read_text())["outputs"]["dev_activated"] is True
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == len(ACTIVE_CHECKS) and all(line.startswith("[PASS]") for line in lines), result.stdout
    assert "[PASS] Dev infrastructure is activated (full mode)" in lines
    assert "Mode:      Full (activated)" in result.stdout
    assert result.stdout.rstrip().endswith("Dev environment is healthy and fully activated")
    payload, code = report(sandbox_env)
    assert code == 0 and payload["mode"] == "active"
    assert [c["name"] for c in payload["checks"]] == ACTIVE_CHECKS


def test_service_scaled_to_zero_warns(active, sandbox_env):
    outputs = _outputs(active)
    ecs = active.client("ecs")
    cluster, service = outputs["ecs_cluster_name"], outputs["backend_service_name"]
    ecs.update_service(cluster=cluster, service=service, desiredCount=0)
    try:
        payload, code = report(sandbox_env)
        assert code == 0
        assert_only(payload, {"ECS backend": "WARN"})
        assert "0/0 tasks running (scaled to zero)" in {c["name"]: c["message"] for c in payload["checks"]}["ECS backend"]
        assert report(sandbox_env, "--strict")[1] == 1
    finally:
        ecs.update_service(cluster=cluster, service=service, desiredCount=1)
    assert report(sandbox_env)[1] == 0


def test_health_url_down_warns(active, sandbox_env):
    active.stop_app()
    try:
        payload, code = report(sandbox_env)
        assert code == 0
        assert_only(payload, {"ALB health URL": "WARN"})
        assert "unreachable" in {c["name"]: c["message"] for c in payload["checks"]}["ALB health URL"]
    finally:
        active.start_app()
    assert report(sandbox_env)[1] == 0


def test_drift_warns_on_a_change_behind_terraforms_back(active, sandbox_env, sandbox_settings):
    ecr = active.client("ecr")
    name = sandbox_settings.ecr_repository_names[1]
    ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
    try:
        payload, code = report(sandbox_env, "--drift")
        assert code == 0
        assert_only(payload, {"Terraform drift": "WARN"})
        drift = {c["name"]: c for c in payload["checks"]}["Terraform drift"]
        assert "dev_activated=true" in drift["message"] and name.split("/")[1] in drift["detail"]
    finally:
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE")
    payload, code = report(sandbox_env, "--drift")
    assert code == 0 and statuses(payload)["Terraform drift"] == "PASS", payload
