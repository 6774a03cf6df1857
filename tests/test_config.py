import re

import pytest

from devops import aws
from devops.config import REPO_ROOT, Settings
from devops.errors import DevopsError
from devops.sandbox.stand_ins import terraform_default


def test_defaults_are_those_of_the_original_bash_scripts():
    settings = Settings.load({}, environ={})
    assert settings.project_name == "davidshaevel"
    assert settings.region == "us-east-1"
    assert settings.bucket_name == "davidshaevel-dev-db-backups"
    assert settings.rds_instance_id == "davidshaevel-dev-db"
    assert settings.ecr_repository_names == ("davidshaevel/backend", "davidshaevel/frontend", "davidshaevel/grafana")
    assert settings.service_discovery_namespace == "davidshaevel.local"
    assert settings.terraform_dir == REPO_ROOT / "terraform/environments/dev"
    assert not settings.uses_emulator
    assert settings.runner == "local"  # --on ecs or devops.runner: ecs runs syncs in the VPC


def test_names_follow_the_project_name():
    settings = Settings.load({"project_name": "acme"}, environ={})
    assert settings.bucket_name == "acme-dev-db-backups"
    assert settings.rds_instance_id == "acme-dev-db"
    assert settings.terraform_variables() == {"TF_VAR_project_name": "acme", "TF_VAR_aws_region": "us-east-1"}


def test_region_precedence_config_then_aws_region_then_default_region():
    env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-central-1"}
    assert Settings.load({}, environ=env).region == "eu-west-1"
    assert Settings.load({}, environ={"AWS_DEFAULT_REGION": "eu-central-1"}).region == "eu-central-1"
    assert Settings.load({"region": "ap-south-1"}, environ=env).region == "ap-south-1"


def test_standard_environment_is_read():
    env = {"AWS_PROFILE": "dev", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
           "NEON_DATABASE_URL": "postgresql://u:secret@h/db"}
    settings = Settings.load({}, environ=env)
    assert settings.aws_profile == "dev"
    assert settings.uses_emulator
    assert settings.neon_database_url == env["NEON_DATABASE_URL"]
    assert "secret" not in repr(settings)


def test_relative_paths_are_from_the_repository_and_absolute_ones_kept(tmp_path):
    settings = Settings.load({"sandbox_dir": "x/y", "terraform_dir": str(tmp_path)}, environ={})
    assert settings.sandbox_dir == REPO_ROOT / "x/y"
    assert settings.terraform_dir == tmp_path


@pytest.mark.parametrize("value, expected", [
    ("", None), ("127.0.0.1:6543", ("127.0.0.1", 6543)), ("bastion.internal", ("bastion.internal", None)),
])
def test_rds_address_override(value, expected):
    assert Settings.load({"rds_address": value}, environ={}).rds_address_override() == expected


def test_bad_rds_address_is_one_clear_error():
    with pytest.raises(DevopsError, match="expected host or host:port"):
        Settings.load({"rds_address": "host:port"}, environ={}).rds_address_override()


@pytest.mark.parametrize("name", ["", "Acme", "acme_co", "acme co", "ab", "1acme", "acme-", "a" * 33, "café"])
def test_bad_project_name_is_refused(name):
    with pytest.raises(DevopsError, match="invalid project_name"):
        Settings.load({"project_name": name}, environ={})


def test_project_name_rule_is_terraforms():
    """The tasks refuse exactly what variables.tf's validation refuses, before Terraform runs."""
    from devops.config import PROJECT_NAME_PATTERN, REPO_ROOT

    variables = (REPO_ROOT / "terraform" / "environments" / "dev" / "variables.tf").read_text()
    block = variables[variables.index('variable "project_name"'):]
    assert re.search(r'regex\("([^"]+)", var\.project_name\)', block).group(1) == PROJECT_NAME_PATTERN
    assert Settings.load({"project_name": "a" * 32}, environ={}).project_name == "a" * 32


def test_unknown_setting_is_refused():
    with pytest.raises(DevopsError, match="unknown devops setting.*projct_name"):
        Settings.load({"projct_name": "x"}, environ={})


def test_the_rds_stand_in_has_the_lock_table_terraform_gives_the_dev_rds():
    """The sandbox models the dev RDS as terraform/environments/dev makes it: its parameter group's
    max_locks_per_transaction (db_max_locks_per_transaction's default), not PostgreSQL's 64."""
    settings = Settings.load({}, environ={})
    assert settings.sandbox_rds_max_locks_per_transaction == int(terraform_default(settings, "db_max_locks_per_transaction"))
    assert terraform_default(settings, "db_engine_version") == "18"


def test_an_unknown_aws_profile_is_one_line_and_clients_take_the_settings_region(tmp_path, monkeypatch):
    (tmp_path / "config").write_text("[profile dev]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    (tmp_path / "credentials").write_text("[dev]\naws_access_key_id = AKIDEV\naws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(DevopsError, match=r"^AWS profile 'nope' not found: check AWS_PROFILE"):
        aws.session(Settings.load({}, environ={"AWS_PROFILE": "nope"}))
    settings = Settings.load({}, environ={"AWS_PROFILE": "dev", "AWS_REGION": "ap-south-1"})
    rds = aws.client(settings, "rds")  # no request: a client only
    assert rds.meta.region_name == "ap-south-1"
    assert rds.meta.endpoint_url == "https://rds.ap-south-1.amazonaws.com"


def test_a_small_put_goes_without_asking_for_100_continue_first(monkeypatch):
    """A manifest's PUT is one round trip, not two; a large body still asks first (nothing is sent: the
    request is read where botocore would send it)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3 = aws.client(Settings.load({}, environ={"AWS_REGION": "us-east-1"}), "s3")
    sent = []

    def capture(request, **_):
        sent.append(request.headers.get("Expect"))
        raise RuntimeError("not sent")

    s3.meta.events.register("before-send.s3", capture)
    for body in (b"{}" * 100, b"x" * (aws.SMALL_BODY + 1)):
        with pytest.raises(RuntimeError):
            s3.put_object(Bucket="b", Key="k", Body=body)
    assert sent == [None, b"100-continue"]
