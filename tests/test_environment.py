"""terraform/environments/dev applied against the emulator in pilot light (the sandbox fixture applied it
once for the session). Activation and back, through `inv activate/deactivate`, are in test_operations.py.
"""

import json

import pytest

from tests.helpers import ACTIVE_OUTPUTS

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
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny_tls = [s for s in policy["Statement"] if s["Effect"] == "Deny"
                and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)]
    assert deny_tls, policy


def test_backups_bucket_expires_dumps_and_aborts_incomplete_uploads(sandbox, sandbox_settings):
    # A sync killed hard leaves its multipart upload's parts behind: only the abort rule removes them.
    rules = sandbox.client("s3").get_bucket_lifecycle_configuration(Bucket=sandbox_settings.bucket_name)["Rules"]
    enabled = [rule for rule in rules if rule["Status"] == "Enabled" and not rule.get("Filter", {}).get("Prefix")]
    assert [rule["Expiration"]["Days"] for rule in enabled if "Expiration" in rule] == [30], rules
    assert [rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for rule in enabled
            if "AbortIncompleteMultipartUpload" in rule] == [1], rules


def test_default_security_group_denies_all_traffic_and_the_database_sends_nothing(sandbox, outputs):
    ec2 = sandbox.client("ec2")
    vpc = {"Name": "vpc-id", "Values": [outputs["vpc_id"]]}
    default = ec2.describe_security_groups(Filters=[vpc, {"Name": "group-name", "Values": ["default"]}])
    [group] = default["SecurityGroups"]
    assert (group["IpPermissions"], group["IpPermissionsEgress"]) == ([], []), group
    db = ec2.describe_security_groups(Filters=[vpc, {"Name": "group-name", "Values": ["*-db-sg"]}])
    [group] = db["SecurityGroups"]
    assert group["IpPermissionsEgress"] == [] and group["IpPermissions"], group


def test_database_instance_is_available_with_a_managed_secret(sandbox, sandbox_settings, outputs):
    rds = sandbox.client("rds")
    db = rds.describe_db_instances(DBInstanceIdentifier=sandbox_settings.rds_instance_id)["DBInstances"][0]
    assert db["DBInstanceStatus"] == "available"
    assert db["Engine"] == "postgres"
    assert db["MasterUserSecret"]["SecretArn"] == outputs["database_secret_arn"]
    assert db["Endpoint"]["Address"] == outputs["database_endpoint"]
    assert (db["DeletionProtection"], db["IAMDatabaseAuthenticationEnabled"], db["AutoMinorVersionUpgrade"]) == \
        (True, True, True)


def test_ecr_repositories_with_lifecycle_policies(sandbox, sandbox_settings, outputs):
    ecr = sandbox.client("ecr")
    names = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
    # The app's three, and the toolbox's for the operation tasks.
    assert names == sorted([*sandbox_settings.ecr_repository_names, f"{sandbox_settings.project_name}/toolbox"])
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


def test_operations_resources_for_tasks_in_the_vpc(sandbox, sandbox_settings, outputs):
    ops = outputs["operations"]
    ecs, ec2, iam = sandbox.client("ecs"), sandbox.client("ec2"), sandbox.client("iam")
    [cluster] = ecs.describe_clusters(clusters=[ops["cluster"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    repo = sandbox.client("ecr").describe_repositories(repositoryNames=[ops["repository_name"]])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["repositoryUri"] == ops["repository_url"]
    [group] = sandbox.client("logs").describe_log_groups(logGroupNamePrefix=ops["log_group"])["logGroups"]
    assert group["retentionInDays"] == 7
    # Egress only: HTTPS and PostgreSQL out, nothing in; RDS's group admits it on 5432.
    [sg] = ec2.describe_security_groups(GroupIds=[ops["security_group_id"]])["SecurityGroups"]
    assert sg["IpPermissions"] == []
    assert sorted(rule["FromPort"] for rule in sg["IpPermissionsEgress"]) == [443, 5432]
    db = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["*-db-sg"]}])["SecurityGroups"][0]
    admitted = {(rule["FromPort"], pair["GroupId"]) for rule in db["IpPermissions"] for pair in rule["UserIdGroupPairs"]}
    assert (5432, ops["security_group_id"]) in admitted
    # The Neon URL's secret exists empty: Terraform never holds the URL.
    secrets = sandbox.client("secretsmanager")
    assert not secrets.describe_secret(SecretId=ops["neon_url_secret_arn"]).get("VersionIdsToStages")
    # The task role: the bucket's dump prefixes and lock, the RDS secret, RDS's status and its free storage
    # (CloudWatch's metric reads take no resource: "*", for that action alone); nothing else.
    task_policy = json.loads(json.dumps(iam.get_role_policy(RoleName=ops["task_role_arn"].split("/")[-1],
                                                            PolicyName="operations-task")["PolicyDocument"]))
    resources = {r for s in task_policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str)
                                                               else s["Resource"])}
    bucket = outputs["db_backups_bucket_arn"]
    assert resources == {bucket, f"{bucket}/neon-dumps/*", f"{bucket}/rds-dumps/*", f"{bucket}/locks/*",
                         outputs["database_secret_arn"],
                         f"arn:aws:rds:{sandbox_settings.region}:123456789012:db:{sandbox_settings.rds_instance_id}",
                         "*"}
    assert [s["Action"] for s in task_policy["Statement"] if s["Resource"] == "*"] in (
        ["cloudwatch:GetMetricStatistics"], [["cloudwatch:GetMetricStatistics"]])
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [outputs["vpc_id"]]}])["VpcEndpoints"]
    assert [e["VpcEndpointType"] for e in endpoints if e["ServiceName"].endswith(".s3")] == ["Gateway"]
