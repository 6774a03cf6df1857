"""Shared fixtures: one sandbox per test session (real PostgreSQL servers, a moto server, Terraform applied
once), and a Terraform CLI configuration that uses the machine's provider mirror when it has one."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from devops import hints, toolbox
from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.sandbox import (HOST, PostgresCluster, Sandbox, Server, certificates, create_app_database, find_pg_bin,
                            free_port)
from devops.sandbox.postgres_stand_ins import own_extensions
from devops.sandbox.provider_mirror import use_provider_mirror
from tests import dbtools
from tests.faults import S3FaultProxy
from tests.helpers import forget_syncs

# Where machines without internet access keep a filesystem mirror of Terraform providers (tests only: the
# product uses a mirror only when TF_PROVIDER_MIRROR names one).
PROVIDER_MIRRORS = ("/opt/tf-plugins", "/usr/share/terraform/plugins", "/usr/local/share/terraform/plugins")


# Scratch space of the tests whose tasks run in a container (the shim's warm container, a container started
# from the dev image): under the repository, which every container of the toolbox mounts at the same path,
# as /tmp of the dev container is not the host's.
SCRATCH = REPO_ROOT / ".toolbox-tmp"

# The folder of the session's Terraform CLI configuration, removed when the session ends.
TF_CLI_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # The machine's provider mirror, if it carries one (devops.sandbox.provider_mirror).
    config.stash[TF_CLI_DIR] = Path(tempfile.mkdtemp(prefix="devops-tfcli-"))
    use_provider_mirror(config.stash[TF_CLI_DIR], candidates=PROVIDER_MIRRORS)
    # Tasks run as subprocesses stay on this host, in this environment (not in the toolbox image).
    os.environ.setdefault("INVOKE_DEVOPS_TOOLBOX", "host")
    # They are a plain `inv`, and their hints say so, also when the suite itself runs through the shim
    # (`./toolbox/inv test` passes its own name in DEVOPS_INV).
    os.environ.pop(hints.INV_ENV, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if TF_CLI_DIR in config.stash:
        shutil.rmtree(config.stash[TF_CLI_DIR], ignore_errors=True)


# The fixtures that need real services: the sandbox's servers and emulator, or a Docker engine.
SERVICES = {"sandbox", "engine"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a real service are marked `sandbox` (`pytest -m "not sandbox"` runs the rest, pure
    logic, in seconds). Tests marked `first` (the sandbox as `sandbox.up` made it) run before any other, and
    tests marked `last` (the sandbox's own shutdown) after everything that uses the sandbox."""
    for item in items:
        if SERVICES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sandbox)
    items.sort(key=lambda item: 0 if item.get_closest_marker("first") else 2 if item.get_closest_marker("last") else 1)


@pytest.fixture(scope="session")
def sandbox_settings():
    # Not under pytest's tmp_path: that is private to root, and the servers run as the postgres user. Under
    # the repository, so that a task run through the toolbox (its own container) finds TF_DATA_DIR there too.
    SCRATCH.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="devops-sandbox-", dir=SCRATCH))
    root.chmod(0o755)
    # The strictest pairing the real services run: Neon on 18, RDS on an older major (15), so that every sync
    # crosses majors through the same client tools. A host without both majors sets them (scripts/test).
    yield Settings.load({"sandbox_dir": str(root / "sandbox"),
                         "sandbox_neon_major": os.environ.get("INVOKE_DEVOPS_SANDBOX_NEON_MAJOR", "18"),
                         "sandbox_rds_major": os.environ.get("INVOKE_DEVOPS_SANDBOX_RDS_MAJOR", "15")}, environ={})
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox(sandbox_settings: Settings):
    box = Sandbox(sandbox_settings, Console())
    box.up()
    yield box
    box.down(quiet=True)


@pytest.fixture(scope="session")
def sandbox_state(sandbox: Sandbox) -> dict:
    return sandbox.load_state()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, sandbox_settings: Settings) -> dict[str, str]:
    """The process environment after `eval "$(inv sandbox.env --tunnel)"`, for running tasks as subprocesses:
    RDS is private, and reached from here through the tunnel that models (tests/test_remote.py uses
    ``private_env`` instead: no way to RDS from here but `--on ecs`)."""
    return {**sandbox.environment(tunnel=True), "INVOKE_DEVOPS_SANDBOX_DIR": str(sandbox_settings.sandbox_dir)}


@pytest.fixture
def private_env(sandbox: Sandbox, sandbox_settings: Settings) -> dict[str, str]:
    """The process environment after `eval "$(inv sandbox.env)"`: RDS as private as on AWS."""
    return {**sandbox.environment(), "INVOKE_DEVOPS_SANDBOX_DIR": str(sandbox_settings.sandbox_dir)}


@pytest.fixture
def neon(sandbox_env: dict[str, str]) -> str:
    """A URL to the Neon stand-in."""
    return sandbox_env["NEON_DATABASE_URL"]


@pytest.fixture
def rds(sandbox_env: dict[str, str]) -> str:
    """A URL to the RDS stand-in."""
    return sandbox_env["SANDBOX_RDS_URL"]


# 48 MB of incompressible rows: twice what the dump's upload holds in memory (three 8 MB parts, two of them
# in flight), so that a fault injected once a part is uploaded lands while pg_dump is still streaming.
BLOBS = ("CREATE TABLE blobs (id int PRIMARY KEY, data bytea);"
         "INSERT INTO blobs SELECT g, gen_random_bytes(1024) FROM generate_series(1, 49152) g;")


@pytest.fixture
def databases(sandbox, sandbox_settings, neon, rds):
    """A function that sets the databases to named states (tests/dbtools.py STATES), e.g.
    ``databases(neon="rich", rds="keep_me")``: each named side is emptied and rebuilt, a side not named is
    left as it is, and no sync is recorded any more."""
    urls = {"neon": neon, "rds": rds}  # before set_to's arguments of the same names hide the fixtures

    def set_to(*, neon: str | None = None, rds: str | None = None) -> None:
        # Every name looked up first: an unknown one fails before anything has changed.
        wanted = {side: dbtools.state(name) for side, name in (("neon", neon), ("rds", rds)) if name is not None}
        # Written directly, the databases match none of the recorded syncs: forget them all, so that the
        # divergence guard sees a first sync.
        forget_syncs(sandbox, sandbox_settings.bucket_name)
        for side, statements in wanted.items():  # Neon first, then RDS
            dbtools.reset(urls[side])
            dbtools.execute(urls[side], statements)

    return set_to


@pytest.fixture
def prepared(databases):
    """Neon holds the rich dataset, RDS a table of its own; no sync recorded (both were written directly)."""
    databases(neon="rich", rds="keep_me")


@pytest.fixture
def big(prepared, neon):
    dbtools.execute(neon, BLOBS)


@pytest.fixture
def proxy(sandbox_env):
    """An HTTP proxy in front of the emulator that can slow or fail S3 requests (tests/faults.py)."""
    fault = S3FaultProxy(sandbox_env["AWS_ENDPOINT_URL"])
    yield fault
    fault.close()


@pytest.fixture(scope="session")
def ops(sandbox):
    """The `operations` output: what `--on ecs` runs tasks with (cluster, roles, the Neon URL's secret)."""
    return sandbox.terraform().outputs()["operations"]


@pytest.fixture
def neon_secret(sandbox, ops, neon):
    """The Neon URL's secret holds the Neon stand-in's URL (as `inv secrets.set-neon-url` puts it), for tasks
    run `--on ecs`; put back after a test that changed it."""
    secrets = sandbox.client("secretsmanager")
    secrets.put_secret_value(SecretId=ops["neon_url_secret_arn"], SecretString=neon)
    yield secrets
    secrets.put_secret_value(SecretId=ops["neon_url_secret_arn"], SecretString=neon)



@pytest.fixture(scope="session")
def server_of_major(sandbox):
    """A function that starts a PostgreSQL server of a given major in the role of a stand-in ("neon" or
    "rds": that stand-in's role, password, database and limits) and returns its URL; all stopped at the end of
    the session. A task reaches it instead of the stand-in through NEON_DATABASE_URL or the RDS address
    override (tests/helpers.py: ``redirect``)."""
    started: list[tuple[PostgresCluster, Path]] = []

    def start(major: str, role: str, tls: str = "sandbox") -> str:
        """``tls``: "sandbox" (a certificate of the sandbox's CA, TLS only), "other-ca" (of a CA nobody
        trusts), or "none" (a server that offers no TLS)."""
        try:
            bin_dir = find_pg_bin(major)
        except DevopsError:
            pytest.fail(f"no PostgreSQL {major} server binaries: the dev image has every major (./toolbox/inv test)")
        root = Path(tempfile.mkdtemp(prefix=f"devops-{role}{major}-", dir=SCRATCH))
        root.chmod(0o755)
        state = sandbox.load_state()
        cluster = PostgresCluster(bin_dir, root / "data", state.get("run_as"))
        ca_dir = Path(state["ca"]).parent if tls == "sandbox" else root / "other-ca"
        if tls == "other-ca":
            certificates.make_ca(ca_dir, "a CA nobody trusts")
        server = Server(name=f"{role}{major}", port=free_port(), superuser_password=secrets.token_urlsafe(18),
                        ca=str(ca_dir / "ca.pem") if tls != "none" else "")
        stand_in = state[role]
        # TLS only, with a certificate for the names the stand-in's has.
        files = (certificates.issue(ca_dir, root, [HOST, "localhost", state["rds_endpoint"]], state.get("run_as"))
                 if tls != "none" else None)
        cluster.init(server, {**sandbox.limits(role), **own_extensions(role, major)}, files)
        cluster.start()
        started.append((cluster, root))
        create_app_database(server, stand_in["user"], stand_in["password"], stand_in["database"])
        return dataclasses.replace(server, user=stand_in["user"], password=stand_in["password"],
                                   database=stand_in["database"]).url()

    yield start
    for cluster, root in started:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def engine() -> str:
    """The docker CLI, with a reachable engine and both toolbox images (built once when missing, by the shim)."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "version"], capture_output=True).returncode != 0:
        if toolbox.inside() == "dev":
            pytest.fail("no Docker engine in the dev container: toolbox/inv mounts /var/run/docker.sock")
        pytest.skip("no Docker engine reachable on this host")
    for target in ("toolbox", "dev"):
        toolbox.image(target)
    return docker


@pytest.fixture
def scratch():
    """A folder of its own under SCRATCH (which every toolbox container mounts at the same path)."""
    SCRATCH.mkdir(exist_ok=True)
    path = SCRATCH / uuid.uuid4().hex[:8]
    path.mkdir()
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def docker_only_path(engine, scratch):
    """A PATH of a host with only Docker and core utilities."""
    from tests.shim import bin_dir
    return bin_dir(scratch / "bin", engine)
