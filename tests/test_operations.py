"""`inv activate` / `inv deactivate` on the sandbox: the full cycle with --sync-data, dry runs, refusals.

The session's sandbox is in pilot light; the cycle test activates and deactivates it once (about two
minutes of the emulator's provider waits), and puts it back in pilot light if an assertion fails midway.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit, urlunsplit

import pytest
from invoke import Config, Executor
from invoke.exceptions import Exit

from devops import environment
from devops.config import ECS_SERVICES, Settings
from devops.console import Console
from devops.environment import (ACTIVATE, DEACTIVATE, PILOT, Flags, Planned, ResourceChange, plan_changes,
                                refuse_always_on_destroy, show_plan)
from devops.errors import DevopsError
from devops.sandbox import SAMPLE_DATA
from tests import dbtools
from tests.helpers import (ACTIVE_OUTPUTS, assert_no_secret, assert_private, forget_syncs, inv, log_of,
                           s3_state, secrets_of, without_log)



@pytest.fixture
def neon_data(databases, sandbox, sandbox_settings, neon, rds):
    """Neon holds the rich dataset; RDS is left as it is; no sync recorded yet. Afterwards both databases are
    put back as the sandbox made them (written directly, so the records of this test's syncs are dropped)."""
    databases(neon="rich")
    yield
    dbtools.reset(neon)
    dbtools.execute(neon, SAMPLE_DATA.read_text())
    dbtools.reset(rds)
    forget_syncs(sandbox, sandbox_settings.bucket_name)


def world(sandbox, settings, neon, rds) -> dict:
    """Everything an operation could change: both databases, every S3 object (dumps and Terraform state)."""
    state_bucket = sandbox.load_state()["terraform"]["state_bucket"]
    return {"neon": dbtools.snapshot(neon), "rds": dbtools.snapshot(rds),
            "dumps": s3_state(sandbox, settings.bucket_name), "state": s3_state(sandbox, state_bucket)}


def _wrong_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}"))


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]


def steps(result) -> dict[str, str]:
    """The closing summary's rows: step -> status."""
    rows = re.findall(r"^  (\S+(?: \(plan\))?)\s+(ok|failed|skipped|not run)\b", result.stdout, re.MULTILINE)
    return dict(rows)


# --------------------------------------------------------------------------------------------------
# The plan, as pure logic


def test_the_plan_view_says_when_a_parameter_group_change_waits_for_a_reboot():
    group = ResourceChange("aws_db_parameter_group.this", "aws_db_parameter_group", ("update",))
    for changes, said in (((group,), True), ((), False)):
        out = io.StringIO()
        show_plan(Console(out=out), ACTIVATE, PILOT, changes, Flags())
        assert ("apply at the instance's next reboot" in out.getvalue()) is said


def test_plan_changes_reads_the_saved_plan_and_refuses_always_on_destroys():
    plan = {"resource_changes": [
        {"address": "aws_ecs_service.this[\"backend\"]", "type": "aws_ecs_service", "mode": "managed",
         "change": {"actions": ["create"]}},
        {"address": "aws_s3_bucket.db_backups", "type": "aws_s3_bucket", "mode": "managed",
         "change": {"actions": ["no-op"]}},
        {"address": "data.aws_caller_identity.current", "type": "aws_caller_identity", "mode": "data",
         "change": {"actions": ["read"]}},
        {"address": "aws_db_instance.main", "type": "aws_db_instance", "mode": "managed",
         "change": {"actions": ["delete", "create"]}},
    ]}
    changes = plan_changes(plan)
    assert [(c.address, c.action) for c in changes] == [('aws_ecs_service.this["backend"]', "create"),
                                                        ("aws_db_instance.main", "replace")]
    with pytest.raises(DevopsError, match=r"destroy always-on resources \(aws_db_instance.main\)"):
        refuse_always_on_destroy(changes)
    refuse_always_on_destroy((ResourceChange("aws_lb.main[0]", "aws_lb", ("delete",)),))  # active resources may go


NO_CONFIRMED_PLAN = ("activate has no confirmed plan in this run: run it as `inv activate` from the project "
                     "(its invoke.yaml sets tasks.executor_class, which runs the plan step first)")


@pytest.fixture
def saved_plan(tmp_path):
    """A plan file on disk, as an earlier run (or anyone) could have left it."""
    plan_dir = tmp_path / "devops-plan-earlier"
    plan_dir.mkdir()
    (plan_dir / "operation.tfplan").write_bytes(b"a saved plan")
    return plan_dir


@pytest.mark.parametrize("planned", [
    None,  # the task ran without the executor's plan step
    "unconfirmed",  # a Planned that was never confirmed, around a plan file on disk
    "another operation",  # deactivate's confirmed plan
    "applied",  # a plan already applied (or discarded) in this run
], ids=str)
def test_apply_refuses_anything_but_this_runs_confirmed_plan(planned, saved_plan):
    planned = {None: None,
               "unconfirmed": Planned(ACTIVATE, proceed=True, plan_dir=saved_plan),
               "another operation": Planned(DEACTIVATE, proceed=True, plan_dir=saved_plan, confirmed=True),
               "applied": Planned(ACTIVATE, proceed=True, confirmed=False)}[planned]
    with pytest.raises(DevopsError) as raised:
        environment.apply(Settings.load({}), Console(), ACTIVATE, planned, dry_run=False)
    assert str(raised.value) == NO_CONFIRMED_PLAN
    assert (saved_plan / "operation.tfplan").exists()  # refused before Terraform, or anything else, ran


@pytest.mark.parametrize("planned", ["none", "confirmed"])
def test_apply_of_a_dry_run_does_nothing(planned, saved_plan, monkeypatch):
    """Under --dry-run the apply step runs no Terraform, prints nothing, and leaves the plan it was handed as it
    was: not even a confirmed plan is applied or discarded, and no plan at all is no error."""
    terraform_used = []

    class Recorder:
        """Terraform that only notes what was asked of it."""
        def __init__(self, *args, **kwargs):
            terraform_used.append("Terraform()")

        def __getattr__(self, name):
            return lambda *args, **kwargs: terraform_used.append(name)

    monkeypatch.setattr(environment, "Terraform", Recorder)
    handed = {"none": None,
              "confirmed": Planned(ACTIVATE, proceed=True, plan_dir=saved_plan, confirmed=True)}[planned]
    out = io.StringIO()
    assert environment.apply(Settings.load({}), Console(out=out), ACTIVATE, handed, dry_run=True) is None
    assert terraform_used == [] and out.getvalue() == ""
    assert (saved_plan / "operation.tfplan").exists()
    if handed is not None:
        assert handed.plan_dir == saved_plan and handed.confirmed


def test_the_operation_without_the_operation_executor_refuses_with_one_line(tmp_path, capsys):
    """`activate` run by Invoke's own executor (no plan step, nothing handed over): the clear error, exit 1."""
    import tasks

    config = Config(overrides={"devops": {"log_dir": str(tmp_path)}})
    with pytest.raises(Exit) as raised:
        Executor(tasks.ns, config).execute(("activate", {"yes": True, "sync_data": False, "dry_run": False,
                                                         "on": None}))
    assert raised.value.code == 1
    assert without_log(capsys.readouterr().err.strip()) == f"[ERROR] {NO_CONFIRMED_PLAN}"


# --------------------------------------------------------------------------------------------------
# Pilot light: nothing changes unless confirmed and synced


def test_activate_dry_run_changes_nothing(sandbox, sandbox_env, sandbox_settings, neon_data, neon, rds):
    before = world(sandbox, sandbox_settings, neon, rds)
    network = sandbox.network()
    network.reset()
    result = inv(sandbox_env, "activate", "--sync-data", "--dry-run")
    counts = network.counts()
    assert result.returncode == 0, result.stderr
    # Round trips: one login to each database, the sync's (activate's own checks ask AWS, not the databases),
    # and a few statements on it (measured 9 to Neon, 10 to RDS with TLS). AWS's 110 requests are mostly
    # Terraform's plan (its provider's refresh): not the project's to count.
    assert counts["neon"].connections == counts["rds"].connections == 1, counts
    assert counts["neon"].round_trips <= 12 and counts["rds"].round_trips <= 12, counts
    out = result.stdout
    # It opens as every task does: the banner with its title and target, then the dry run's.
    opening = [line for line in out.splitlines()[:12] if line.strip()][:6]
    assert opening[:2] == ["=" * 40, "  ACTIVATE: PILOT LIGHT -> ACTIVE (FULL MODE)"], out
    assert opening[2].startswith("  Target: sandbox (AWS emulator at ") and opening[3] == "=" * 40, out
    assert opening[4:] == ["=" * 40, "  DRY RUN - No changes will be made"], out
    assert "[INFO] Target:" not in out
    assert "ACTIVATION PLAN" in out and "pilot light -> active (full mode)" in out
    assert re.search(r"aws_ecs_service\s+4", out) and re.search(r"aws_lb\s+1", out)  # from the plan itself
    assert "Data sync: Neon -> RDS before Terraform (sync.neon-to-rds, dry run)" in out
    assert "SYNC PLAN" in out and "Dry run complete" in out  # the sync ran as a pre-task, as a dry run
    assert steps(result) == {"activate (plan)": "ok", "sync.neon-to-rds": "ok", "activate": "ok"}  # no validate
    assert world(sandbox, sandbox_settings, neon, rds) == before


def test_without_a_terminal_activate_refuses_unless_yes(sandbox, sandbox_env, sandbox_settings, neon_data, neon, rds):
    before = world(sandbox, sandbox_settings, neon, rds)
    result = inv(sandbox_env, "activate", "--sync-data")
    assert result.returncode == 1
    assert [without_log(line) for line in errors(result)] == [
        "[ERROR] refusing to activate without confirmation: no terminal to ask on; pass --yes"]
    assert steps(result) == {"activate (plan)": "failed", "sync.neon-to-rds": "not run", "activate": "not run",
                             "validate": "not run"}
    assert world(sandbox, sandbox_settings, neon, rds) == before


def test_a_failed_sync_stops_activate_before_terraform(sandbox, sandbox_env, sandbox_settings, neon_data, neon, rds):
    before = world(sandbox, sandbox_settings, neon, rds)
    result = inv({**sandbox_env, "NEON_DATABASE_URL": _wrong_password(neon)}, "activate", "--sync-data", "--yes")
    assert result.returncode == 1
    assert len(errors(result)) == 1 and "password authentication failed" in errors(result)[0]
    assert "Traceback" not in result.stderr and "not-the-password" not in result.stdout + result.stderr
    assert steps(result) == {"activate (plan)": "ok", "sync.neon-to-rds": "failed", "activate": "not run",
                             "validate": "not run"}
    assert world(sandbox, sandbox_settings, neon, rds) == before  # Terraform state untouched


def test_a_terraform_failure_leaves_its_whole_error_in_a_private_masked_log(sandbox, sandbox_env, tmp_path):
    env = {**sandbox_env, "TF_VAR_availability_zones": '["only-one"]', "INVOKE_DEVOPS_LOG_DIR": str(tmp_path)}
    result = inv(env, "activate", "--yes")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [without_log(line) for line in errors(result)] == [
        "[ERROR] terraform plan failed: Invalid value for variable: availability_zones must be empty or list "
        "exactly two zones."]
    log = log_of(errors(result)[0])
    assert log.parent == tmp_path and log.name.endswith("-activate.log")
    assert_private(log)
    text = log.read_text()
    # Terraform's whole error (the detail past its first line), and what the task printed before it.
    assert "Error: Invalid value for variable" in text and "This was checked by the validation rule at" in text
    assert "--- terraform plan -input=false" in text and "[INFO] Current mode: pilot light" in text
    assert steps(result)["activate (plan)"] == "failed"
    for secret in secrets_of(sandbox_env):
        assert secret not in text


# --------------------------------------------------------------------------------------------------
# The full cycle


@pytest.fixture
def back_to_pilot_light(sandbox):
    yield
    terraform = sandbox.terraform()
    if terraform.outputs().get("dev_activated"):
        terraform.apply(variables={"dev_activated": False})


def test_activate_and_deactivate_with_sync_data(sandbox, sandbox_env, private_env, sandbox_settings, neon_data,
                                                neon_secret, neon, rds, back_to_pilot_light):
    """The whole cycle: activate with its sync and validate in the VPC (--on ecs, RDS private), then the way
    back from here, through the tunnel."""
    terraform = sandbox.terraform()
    pilot_light = set(terraform.run("state", "list").stdout.split())

    result = inv(private_env, "activate", "--sync-data", "--on", "ecs", "--yes", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    # Terraform ran here; the sync and the closing validate each ran as an ECS task.
    assert re.search(r"^\[INFO\] Running `inv sync\.neon-to-rds --yes` as ECS task", result.stdout, re.M)
    assert re.search(r"^\[INFO\] Running `inv validate` as ECS task", result.stdout, re.M)
    assert dbtools.snapshot(rds) == dbtools.snapshot(neon)  # Neon's data is in RDS
    active = terraform.outputs()
    assert active["dev_activated"] is True and all(active[name] for name in ACTIVE_OUTPUTS)
    _assert_active_resources(sandbox, sandbox_settings, active)
    added = set(terraform.run("state", "list").stdout.split()) - pilot_light
    assert pilot_light <= set(terraform.run("state", "list").stdout.split())
    assert added and all("[" in address for address in added), added  # only counted/for_each'd resources
    assert "Dev environment is healthy and fully activated" in result.stdout, result.stdout[-3000:]  # validate
    assert steps(result) == {"activate (plan)": "ok", "sync.neon-to-rds": "ok", "activate": "ok", "validate": "ok"}
    assert re.search(r"^  total\s+\d+\.\d$", result.stdout, re.MULTILINE)
    assert_no_secret(result, sandbox_env)
    # Terraform's progress: a line per resource as it completes, and the slowest in the closing line.
    created = re.findall(r"^\[INFO\] (\S+): created \(\d+ s\)$", result.stdout, re.MULTILINE)
    assert set(created) == {a for a in added if not a.startswith("data.")}, set(created) ^ added
    assert re.search(rf"^\[INFO\] terraform apply: {len(added)} resources in \d+\.\d s; slowest: \S+ \(\d+ s\)",
                     result.stdout, re.MULTILINE)

    # A second activate is a no-op: nothing synced, nothing applied.
    before = world(sandbox, sandbox_settings, neon, rds)
    again = inv(sandbox_env, "activate", "--sync-data", "--yes")
    assert again.returncode == 0 and "already active (full mode): nothing to change" in again.stdout
    assert steps(again) == {"activate (plan)": "ok", "sync.neon-to-rds": "skipped", "activate": "skipped",
                            "validate": "skipped"}
    assert world(sandbox, sandbox_settings, neon, rds) == before

    # Work happens in RDS while dev is active.
    dbtools.execute(rds, "UPDATE app.customers SET name = 'changed while active' WHERE id = 1;"
                         "INSERT INTO app.orders (customer_id, total) VALUES (2, 4242);")

    # A dry run of the way back changes nothing either.
    before = world(sandbox, sandbox_settings, neon, rds)
    dry = inv(sandbox_env, "deactivate", "--sync-data", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "DEACTIVATION PLAN" in dry.stdout and re.search(r"Resources to be DESTROYED:", dry.stdout)
    assert "Data sync: RDS -> Neon before Terraform (sync.rds-to-neon, dry run)" in dry.stdout
    assert world(sandbox, sandbox_settings, neon, rds) == before

    # The data cannot be saved to Neon: the active environment is not destroyed.
    failed = inv({**sandbox_env, "NEON_DATABASE_URL": _wrong_password(neon)}, "deactivate", "--sync-data", "--yes")
    assert failed.returncode == 1 and len(errors(failed)) == 1
    assert steps(failed)["deactivate"] == "not run"
    assert world(sandbox, sandbox_settings, neon, rds) == before

    # Someone wrote to Neon while dev was active: the divergence guard stops the sync, and so the deactivation.
    dbtools.execute(neon, "UPDATE public.settings SET value = '\"light\"' WHERE key = 'theme'")
    before = world(sandbox, sandbox_settings, neon, rds)
    refused = inv(sandbox_env, "deactivate", "--sync-data", "--yes")
    assert refused.returncode == 1 and len(errors(refused)) == 1, refused.stderr
    assert errors(refused)[0].startswith("[ERROR] refused: Neon was written to") and "public.settings" in errors(refused)[0]
    assert steps(refused)["deactivate"] == "not run"
    assert world(sandbox, sandbox_settings, neon, rds) == before
    dbtools.execute(neon, "UPDATE public.settings SET value = '\"dark\"' WHERE key = 'theme'")  # as recorded again

    result = inv(sandbox_env, "deactivate", "--sync-data", "--yes", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dbtools.scalar(neon, "SELECT name FROM app.customers WHERE id = 1") == "changed while active"
    assert dbtools.snapshot(neon) == dbtools.snapshot(rds)
    assert set(terraform.run("state", "list").stdout.split()) == pilot_light  # always-on intact, active gone
    back = terraform.outputs()
    assert back["dev_activated"] is False and all(back.get(name) is None for name in ACTIVE_OUTPUTS)
    assert not sandbox.client("elbv2").describe_load_balancers()["LoadBalancers"]
    assert sandbox.client("rds").describe_db_instances()["DBInstances"][0]["DBInstanceStatus"] == "available"
    assert "Dev Pilot Light components are healthy" in result.stdout  # the validate post-task, in pilot light
    destroyed = re.findall(r"^\[INFO\] (\S+): destroyed \(\d+ s\)$", result.stdout, re.MULTILINE)
    assert set(destroyed) == {a for a in added if not a.startswith("data.")}
    assert steps(result) == {"deactivate (plan)": "ok", "sync.rds-to-neon": "ok", "deactivate": "ok", "validate": "ok"}


def _assert_active_resources(sandbox, settings, outputs):
    ecs = sandbox.client("ecs")
    cluster = ecs.describe_clusters(clusters=[outputs["ecs_cluster_name"]])["clusters"][0]
    assert cluster["status"] == "ACTIVE"
    service_names = [outputs[f"{name}_service_name"] for name in ECS_SERVICES]
    services = ecs.describe_services(cluster=outputs["ecs_cluster_name"], services=service_names)["services"]
    assert sorted(s["serviceName"] for s in services) == sorted(service_names)
    assert all(s["launchType"] == "FARGATE" and s["desiredCount"] >= 1 for s in services)

    elbv2 = sandbox.client("elbv2")
    albs = elbv2.describe_load_balancers()["LoadBalancers"]
    assert [alb["DNSName"] for alb in albs] == [outputs["alb_dns_name"]]
    groups = elbv2.describe_target_groups(LoadBalancerArn=albs[0]["LoadBalancerArn"])["TargetGroups"]
    assert groups and all(group["HealthCheckPath"] == "/api/health" for group in groups)
    listeners = elbv2.describe_listeners(LoadBalancerArn=albs[0]["LoadBalancerArn"])["Listeners"]
    assert [(l["Port"], l["Protocol"]) for l in listeners] == [(80, "HTTP")]  # no certificate given

    distribution = sandbox.client("cloudfront").get_distribution(Id=outputs["cloudfront_distribution_id"])
    origins = distribution["Distribution"]["DistributionConfig"]["Origins"]["Items"]
    assert origins[0]["DomainName"] == outputs["alb_dns_name"]

    discovery = sandbox.client("servicediscovery")
    namespaces = discovery.list_namespaces()["Namespaces"]
    assert [ns["Name"] for ns in namespaces] == [settings.service_discovery_namespace]
    registered = {s["Name"] for s in discovery.list_services()["Services"]}
    assert registered == set(ECS_SERVICES)
