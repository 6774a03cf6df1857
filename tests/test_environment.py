"""terraform/environments/dev applied against the emulator: pilot light, activation and back.

The sandbox fixture applied pilot light once for the session; the cycle test activates and deactivates
on that same state, so the always-on resources (and the slow RDS instance) are created only once.
"""

import json

import pytest

from devops.config import ECS_SERVICES

ACTIVE_OUTPUTS = ("ecs_cluster_name", "backend_service_name", "frontend_service_name", "prometheus_service_name",
                  "grafana_service_name", "alb_dns_name", "cloudfront_distribution_id", "service_discovery_namespace")
ALWAYS_ON_OUTPUTS = ("vpc_id", "database_endpoint", "database_port", "database_name", "database_secret_arn",
                     "db_instance_identifier", "db_backups_bucket_name", "db_backups_bucket_arn", "ecr_repository_urls")


@pytest.fixture(scope="module")
def outputs(sandbox):
    return sandbox.terraform().outputs()


def test_outputs_in_pilot_light(outputs, sandbox_settings):
    assert outputs["dev_activated"] is False
    for name in ALWAYS_ON_OUTPUTS:
        assert outputs[name], name
    for name in ACTIVE_OUTPUTS:
        assert outputs.get(name) is None, name
    assert outputs["db_instance_identifier"] == sandbox_settings.rds_instance_id
    assert outputs["db_backups_bucket_name"] == sandbox_settings.bucket_name


def test_backups_bucket_is_protected(sandbox, sandbox_settings):
    s3 = sandbox.client("s3")
    bucket = sandbox_settings.bucket_name
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [(rule["Status"], rule["Expiration"]["Days"]) for rule in rules] == [("Enabled", 30)]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny_tls = [s for s in policy["Statement"] if s["Effect"] == "Deny"
                and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)]
    assert deny_tls, policy


def test_database_instance_is_available_with_a_managed_secret(sandbox, sandbox_settings, outputs):
    rds = sandbox.client("rds")
    db = rds.describe_db_instances(DBInstanceIdentifier=sandbox_settings.rds_instance_id)["DBInstances"][0]
    assert db["DBInstanceStatus"] == "available"
    assert db["Engine"] == "postgres"
    assert db["MasterUserSecret"]["SecretArn"] == outputs["database_secret_arn"]
    assert db["Endpoint"]["Address"] == outputs["database_endpoint"]


def test_three_ecr_repositories_with_lifecycle_policies(sandbox, sandbox_settings, outputs):
    ecr = sandbox.client("ecr")
    names = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
    assert names == sorted(sandbox_settings.ecr_repository_names)
    for name in names:
        assert json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])["rules"]
    assert set(outputs["ecr_repository_urls"]) == {"backend", "frontend", "grafana"}


def test_vpc_with_public_and_private_subnets_in_two_zones(sandbox, outputs):
    ec2 = sandbox.client("ec2")
    assert ec2.describe_vpcs(VpcIds=[outputs["vpc_id"]])["Vpcs"][0]["State"] == "available"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [outputs["vpc_id"]]}])["Subnets"]
    assert len(subnets) == 4
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert sorted(s["MapPublicIpOnLaunch"] for s in subnets) == [False, False, True, True]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [outputs["vpc_id"]]}])
    assert len(groups["SecurityGroups"]) >= 4  # default + alb, ecs tasks, database


def test_plan_right_after_apply_has_no_changes(sandbox):
    assert sandbox.terraform().plan(variables={"dev_activated": False}) is False


def test_activate_then_deactivate(sandbox, sandbox_settings):
    terraform = sandbox.terraform()
    pilot_light = set(terraform.run("state", "list").stdout.split())

    terraform.apply(variables={"dev_activated": True})
    active = terraform.outputs()
    assert active["dev_activated"] is True
    assert all(active[name] for name in ACTIVE_OUTPUTS)
    _assert_active_resources(sandbox, sandbox_settings, active)
    assert terraform.plan(variables={"dev_activated": True}) is False
    added = set(terraform.run("state", "list").stdout.split()) - pilot_light
    assert pilot_light <= set(terraform.run("state", "list").stdout.split())
    assert added and all(_is_active_address(address) for address in added), added

    terraform.apply(variables={"dev_activated": False})
    back = terraform.outputs()
    assert set(terraform.run("state", "list").stdout.split()) == pilot_light
    assert all(back.get(name) is None for name in ACTIVE_OUTPUTS)
    assert terraform.plan(variables={"dev_activated": False}) is False
    ecs = sandbox.client("ecs")
    assert ecs.describe_clusters(clusters=[active["ecs_cluster_name"]])["clusters"][0]["status"] == "INACTIVE" or \
        not ecs.list_clusters()["clusterArns"]
    assert not sandbox.client("elbv2").describe_load_balancers()["LoadBalancers"]
    assert sandbox.client("rds").describe_db_instances()["DBInstances"][0]["DBInstanceStatus"] == "available"
    assert sandbox.client("s3").head_bucket(Bucket=sandbox_settings.bucket_name)


def _is_active_address(address: str) -> bool:
    """Active resources are counted or for_each'd on dev_activated; every address carries an index."""
    return "[" in address


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
