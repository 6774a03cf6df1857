"""The stand-ins as one object: start them, say where they are, point the tasks at them, stop them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.session
from psycopg2 import sql

from devops import aws
from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.emulator_tasks import CREDENTIALS as EMULATOR_CREDENTIALS
from devops.emulator_tasks import TASKS_CONFIG_ENV
from devops.errors import DevopsError
from devops.files import write_private
from devops.sandbox import certificates
from devops.sandbox.postgres import HOST, PostgresCluster, Server, _unprivileged_user, find_pg_bin
from devops.sandbox.processes import _http_ok, _terminate_group, free_port, pid_alive, port_open, wait_for
from devops.terraform import Terraform


STATE_FILE = "state.json"
TASKS_CONFIG = "ecs-tasks.json"
COMPONENTS = ("neon", "rds", "emulator", "app", "network", "terraform")
SAMPLE_DATA = Path(__file__).with_name("sample_data.sql")
NEON_ROLE = "neondb_owner"
NEON_DATABASE = "neondb"
STATE_KEY = "dev/terraform.tfstate"


def terraform_default(settings: Settings, variable: str) -> str:
    """A variable's default in the environment's Terraform code (variables.tf), e.g. db_engine_version."""
    text = (settings.terraform_dir / "variables.tf").read_text()
    block = re.search(r'variable\s+"' + re.escape(variable) + r'"\s*\{(.*?)\n\}', text, re.S)
    default = re.search(r'^\s*default\s*=\s*"?([^"\n]*?)"?\s*$', block.group(1), re.M) if block else None
    if not default:
        raise DevopsError(f"no default for variable {variable} in {settings.terraform_dir / 'variables.tf'}")
    return default.group(1)



class Sandbox:
    def __init__(self, settings: Settings, console: Console | None = None):
        self.settings = settings
        self.console = console or Console()
        self.dir = settings.sandbox_dir
        self.state_path = self.dir / STATE_FILE

    # ---- state -------------------------------------------------------------------------------

    def load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        # The state holds the stand-ins' throwaway passwords: readable by its owner only.
        write_private(tmp, json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def _server(self, state: dict[str, Any], name: str) -> Server:
        return Server(**state[name])

    def cluster(self, name: str) -> PostgresCluster:
        """The PostgreSQL server of one stand-in ("neon" or "rds")."""
        state = self.load_state()
        return PostgresCluster(Path(state["pg_bin"][name]), self.dir / name, state.get("run_as"))

    def emulator_url(self, state: dict[str, Any]) -> str:
        return f"http://{HOST}:{state['emulator']['port']}"

    def aws_environment(self, state: dict[str, Any]) -> dict[str, str | None]:
        """The AWS side of the environment that points a task at the sandbox (None = unset)."""
        return {
            "AWS_ENDPOINT_URL": self.emulator_url(state),
            "AWS_REGION": self.settings.region,
            "AWS_DEFAULT_REGION": self.settings.region,  # what boto3 and AWS CLI v1 read (not AWS_REGION)
            **EMULATOR_CREDENTIALS,
            "AWS_PROFILE": None,
            "AWS_SESSION_TOKEN": None,
            "TF_DATA_DIR": str(self.dir / "terraform"),
            # The emulated RDS runs the RDS stand-in's major: every Terraform run against the sandbox
            # (activate, validate --drift) keeps it, as a tfvars entry would on AWS.
            "TF_VAR_db_engine_version": state.get("rds_major") or None,
            # And its parameter group the stand-in's lock table.
            "TF_VAR_db_max_locks_per_transaction": str(self.settings.sandbox_rds_max_locks_per_transaction),
        }

    def _boto_session(self) -> botocore.session.Session:
        boto = botocore.session.Session()
        boto.set_credentials(EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"], EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        return boto

    def emulator_settings(self, state: dict[str, Any]) -> Settings:
        return dataclasses.replace(self.settings, aws_endpoint_url=self.emulator_url(state), aws_profile="")

    def client(self, service: str, state: dict[str, Any] | None = None) -> Any:
        """A client for the sandbox's emulator."""
        return aws.client(self.emulator_settings(state or self.load_state()), service, self._boto_session())

    def terraform(self, state: dict[str, Any] | None = None) -> Terraform:
        """Terraform pointed at the sandbox's emulator and its own data dir."""
        state = state or self.load_state()
        return Terraform(self.settings, env=self.aws_environment(state), log=self.dir / "terraform.log")

    def majors(self) -> dict[str, str]:
        """The stand-ins' PostgreSQL majors: Neon's setting, and RDS's (Terraform's db_engine_version default
        unless set)."""
        return {"neon": self.settings.sandbox_neon_major,
                "rds": self.settings.sandbox_rds_major or terraform_default(self.settings, "db_engine_version")}

    # ---- status ------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """One row per component: name, address, running, detail."""
        state = self.load_state()
        if not state:
            return []
        rows = []
        for name, role in (("neon", "Neon stand-in"), ("rds", "RDS stand-in")):
            if name in state:
                server = self._server(state, name)
                rows.append({"component": name, "address": f"{HOST}:{server.port}",
                             "running": port_open(server.port),
                             "detail": f"{role}, PostgreSQL {server.version or '?'}, "
                                       f"database {server.database or '-'}"})
        if "emulator" in state:
            emulator = state["emulator"]
            rows.append({"component": "emulator", "address": self.emulator_url(state),
                         "running": pid_alive(emulator.get("pid")) and port_open(emulator["port"]),
                         "detail": "moto server (AWS)"})
        if "app" in state:
            app = state["app"]
            rows.append({"component": "app", "address": f"http://{HOST}:{app['port']}/api/health",
                         "running": pid_alive(app.get("pid")) and port_open(app["port"]),
                         "detail": "app stand-in behind the ALB address override (devops.alb_address)"})
        if "network" in state:
            network = state["network"]
            rows.append({"component": "network", "address": f"{HOST}:{network['control']}",
                         "running": pid_alive(network.get("pid")) and port_open(network["control"]),
                         "detail": f"the tasks' way to Neon, RDS and AWS: {self.settings.sandbox_rtt_ms:g} ms "
                                   "round trips (devops.sandbox_rtt_ms), counted"})
        if "terraform" in state:
            rows.append({"component": "terraform", "address": str(self.settings.terraform_dir),
                         "running": bool(state["terraform"].get("applied")),
                         "detail": f"state s3://{state['terraform']['state_bucket']}/{STATE_KEY}"})
        return rows

    def is_up(self) -> bool:
        rows = self.status()
        return len(rows) == len(COMPONENTS) and all(row["running"] for row in rows)

    # ---- up ----------------------------------------------------------------------------------

    def up(self) -> dict[str, Any]:
        """Start everything (idempotent): returns the state."""
        if self.is_up():
            self.console.info(f"Sandbox already up in {self.dir}")
            return self.load_state()
        if self.dir.exists():
            self.console.warn(f"Sandbox in {self.dir} is incomplete or stopped: recreating it")
            self.down(quiet=True)
        started = time.monotonic()
        try:
            state = self._start()
        except BaseException:
            # Never leave half a sandbox running: a failed or interrupted up cleans after itself.
            self.console.error("Sandbox start failed: stopping what was started")
            self.down(quiet=True)
            raise
        self.console.passed(f"Sandbox up in {time.monotonic() - started:.0f}s")
        return state

    def _start(self) -> dict[str, Any]:
        majors = self.majors()
        bin_dirs = {name: find_pg_bin(major, self.settings.sandbox_pg_bin) for name, major in majors.items()}
        run_as = _unprivileged_user()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # the PostgreSQL user must reach its data folders
        state: dict[str, Any] = {"project_name": self.settings.project_name, "run_as": run_as,
                                 "pg_bin": {name: str(path) for name, path in bin_dirs.items()},
                                 "rds_major": majors["rds"]}
        state["ca"] = str(certificates.make_ca(self.dir / "ca"))
        state["emulator"] = self._start_emulator()
        self._save_state(state)
        state["app"] = self._start_app()
        self._save_state(state)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Terraform (a minute and a half of provider waits against the emulator) runs while the
            # PostgreSQL servers are created and loaded.
            applied = pool.submit(self._apply_terraform, state)
            for name in ("neon", "rds"):
                state[name] = dataclasses.asdict(self._start_server(name, bin_dirs[name], run_as, state["ca"]))
                self._save_state(state)
            neon = self._server(state, "neon")
            self._create_app_database(neon, NEON_ROLE, secrets.token_urlsafe(18), NEON_DATABASE)
            state["neon"] = dataclasses.asdict(neon)
            self._save_state(state)
            self._load_sample_data(neon)
            self.console.info(f"Neon stand-in loaded with sample data ({HOST}:{neon.port}/{neon.database})")
            outputs = applied.result()
        state["terraform"] = {"applied": True, "state_bucket": self._state_bucket()}
        rds = self._server(state, "rds")
        secret = aws.read_secret_json(self.emulator_settings(state), outputs["database_secret_arn"],
                                      self.client("secretsmanager", state))
        self._create_app_database(rds, secret["username"], secret["password"], outputs["database_name"])
        state["rds"] = dataclasses.asdict(rds)
        state["rds_endpoint"] = outputs["database_endpoint"]
        # RDS's certificate names its endpoint: the tasks verify that name, through a tunnel too.
        certificates.issue(self.dir / "ca", self.dir / "rds", [HOST, "localhost", outputs["database_endpoint"]], run_as)
        self.cluster("rds").reload()
        state["network"] = self._start_network(state)
        self._save_state(state)
        self._write_tasks_config(outputs["database_endpoint"], rds.port, state["app"]["port"], state["ca"])
        self.console.info(f"RDS stand-in: role {rds.user} has the password from {outputs['database_secret_arn']}")
        return state

    def _write_tasks_config(self, rds_endpoint: str, rds_port: int, app_port: int, ca: str) -> None:
        """What the emulator's ECS tasks need to reach the RDS stand-in: the endpoint's host name resolves
        to 127.0.0.1 in the container; the stand-in listens on a random port (not 5432), so the RDS address
        override points at it (its certificate's name still verified). The tasks trust the sandbox's CA,
        mounted in the container, for both sides, as the image trusts AWS's and the public ones in the VPC.
        The emulated ALB's name resolves nowhere, in the VPC too: validate's health URL goes to the app
        stand-in, as from the host."""
        config = {"extra_hosts": {rds_endpoint: HOST},
                  "volumes": {ca: {"bind": ca, "mode": "ro"}},
                  "environment": {"INVOKE_DEVOPS_RDS_ADDRESS": f"{HOST}:{rds_port}",
                                  "INVOKE_DEVOPS_ALB_ADDRESS": f"{HOST}:{app_port}",
                                  "INVOKE_DEVOPS_NEON_CA_FILE": ca, "INVOKE_DEVOPS_RDS_CA_FILE": ca}}
        (self.dir / TASKS_CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    def _start_emulator(self) -> dict[str, Any]:
        try:
            import moto.server  # noqa: F401  (only to fail early with a clear message)
        except ImportError:
            raise DevopsError("the AWS emulator (moto server) is not installed: pip install -r requirements-dev.txt") from None
        port = free_port()
        log = (self.dir / "emulator.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "devops.emulator", "-H", HOST, "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            # AWS-managed IAM policies (AmazonECSTaskExecutionRolePolicy) exist only when moto loads them.
            # ECS services report one running task each (moto runs none by itself; the dev services want
            # one each, var.service_desired_count): `inv validate` then sees an active sandbox as healthy,
            # and an update_service to desiredCount=0 still shows as 0 running.
            # ECS tasks it runs (devops/emulator_tasks.py) learn from this file how to reach the RDS stand-in.
            env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_ECS_SERVICE_RUNNING": "1",
                 TASKS_CONFIG_ENV: str(self.dir / TASKS_CONFIG)},
            cwd=REPO_ROOT,
        )
        log.close()
        url = f"http://{HOST}:{port}/moto-api/"
        wait_for(lambda: process.poll() is None and _http_ok(url), 30, "the AWS emulator")
        self.console.info(f"AWS emulator (moto, devops.emulator) on http://{HOST}:{port}")
        return {"port": port, "pid": process.pid}

    def _start_app(self, port: int | None = None) -> dict[str, Any]:
        """The app stand-in: a static HTTP server whose only page is /api/health (200)."""
        root = self.dir / "app"
        (root / "api").mkdir(parents=True, exist_ok=True)
        (root / "api" / "health").write_text('{"status": "ok"}\n')
        port = port or free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", HOST, "--directory", str(root), str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(lambda: process.poll() is None and _http_ok(f"http://{HOST}:{port}/api/health"), 30,
                 "the app stand-in")
        self.console.info(f"App stand-in (GET /api/health) on http://{HOST}:{port}")
        return {"port": port, "pid": process.pid}

    def stop_app(self) -> None:
        """Stop the app stand-in (tests use it to make the health URL fail)."""
        pid = self.load_state().get("app", {}).get("pid")
        if pid_alive(pid):
            _terminate_group(pid)

    def start_app(self) -> None:
        """(Re)start the app stand-in on its recorded port."""
        self.stop_app()
        state = self.load_state()
        state["app"] = self._start_app(state["app"]["port"])
        self._save_state(state)

    def limits(self, name: str) -> dict[str, int]:
        """The server limits of the stand-in ``name`` (neon, rds), as the real service sets them."""
        return {setting: getattr(self.settings, f"sandbox_{name}_{setting}")
                for setting in ("max_connections", "max_locks_per_transaction")}

    def _start_network(self, state: dict[str, Any]) -> dict[str, Any]:
        """The proxy in front of the stand-ins and the emulator (devops/sandbox/network.py)."""
        upstreams = {"neon": state["neon"]["port"], "rds": state["rds"]["port"], "aws": state["emulator"]["port"]}
        routes = {name: free_port() for name in upstreams}
        control = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "devops.sandbox.network", "--control", str(control),
             "--rtt-ms", str(self.settings.sandbox_rtt_ms),
             # The emulator speaks HTTP where AWS speaks HTTPS: the network charges TLS's handshake.
             *(f"--route={name}:{routes[name]}:{upstream}{':tls' if name == 'aws' else ''}"
               for name, upstream in upstreams.items())],
            stdout=subprocess.DEVNULL, stderr=(self.dir / "network.log").open("w"), stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=REPO_ROOT,
        )
        wait_for(lambda: process.poll() is None and port_open(control), 30, "the sandbox's network")
        self.console.info(f"Network: Neon, RDS and AWS through {HOST}:{routes['neon']}, {routes['rds']}, "
                          f"{routes['aws']} ({self.settings.sandbox_rtt_ms:g} ms round trips)")
        return {"pid": process.pid, "control": control, "routes": routes}

    def network(self) -> Any:
        """The control of the sandbox's network (devops.sandbox.network.Network): its round-trip time, what
        crossed it."""
        from devops.sandbox.network import Network  # here: `python -m devops.sandbox.network` imports this package

        return Network(self.load_state()["network"]["control"])

    def _start_server(self, name: str, bin_dir: Path, run_as: str | None, ca: str) -> Server:
        cluster = PostgresCluster(bin_dir, self.dir / name, run_as)
        server = Server(name=name, port=free_port(), superuser_password=secrets.token_urlsafe(18),
                        version=cluster.version(), ca=ca)
        cluster.root.mkdir(parents=True, exist_ok=True)
        tls = certificates.issue(self.dir / "ca", cluster.root, [HOST, "localhost"], run_as)
        cluster.init(server, self.limits(name), tls)
        cluster.start()
        self.console.info(f"PostgreSQL {server.version} for the {name} stand-in on {HOST}:{server.port}")
        return server

    @staticmethod
    def _create_app_database(server: Server, user: str, password: str, database: str) -> None:
        """A login role and a database it owns (like a Neon owner or an RDS master user, not a superuser)."""
        conn = server.connect(as_superuser=True)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD %s").format(
                    sql.Identifier(user)), (password,))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(user)))
        finally:
            conn.close()
        server.user, server.password, server.database = user, password, database

    @staticmethod
    def _load_sample_data(server: Server) -> None:
        conn = server.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(SAMPLE_DATA.read_text())
        finally:
            conn.close()

    def _state_bucket(self) -> str:
        return f"{self.settings.name_prefix}-sandbox-tfstate"

    def _apply_terraform(self, state: dict[str, Any]) -> dict[str, Any]:
        self.client("s3", state).create_bucket(Bucket=self._state_bucket())
        terraform = self.terraform(state)
        started = time.monotonic()
        terraform.init(backend_config={
            "bucket": self._state_bucket(), "key": STATE_KEY, "region": self.settings.region,
            # The emulator serves buckets by path, not by virtual host name.
            "use_path_style": "true",
        })
        self.console.info("Terraform: applying the dev environment in pilot light against the emulator "
                          "(about 90s of provider waits)...")
        terraform.apply(variables={"dev_activated": False})
        outputs = terraform.outputs()
        self.console.info(f"Terraform applied in {time.monotonic() - started:.0f}s "
                          f"(log: {self.dir / 'terraform.log'})")
        return outputs

    # ---- down --------------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop everything the sandbox started and remove its folder."""
        state = self.load_state()
        if not self.dir.exists():
            if not quiet:
                self.console.info(f"No sandbox in {self.dir}: nothing to stop")
            return
        for component in ("network", "emulator", "app"):
            pid = state.get(component, {}).get("pid")
            if pid_alive(pid):
                _terminate_group(pid)
        for name in ("neon", "rds"):
            root = self.dir / name
            if (root / "data" / "postmaster.pid").exists():
                cluster = PostgresCluster(Path(state["pg_bin"][name]), root, state.get("run_as", _unprivileged_user()))
                cluster.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if not quiet:
            self.console.passed(f"Sandbox stopped and {self.dir} removed")

    # ---- env ---------------------------------------------------------------------------------

    def env_values(self, tunnel: bool = False) -> dict[str, str | None]:
        """The variables that point every task (and psql) at the sandbox; None means unset.

        RDS is private, as on AWS: its emulated endpoint leads nowhere from the host, so a local sync fails
        at once and `--on ecs` runs it in the emulator's VPC. ``tunnel`` models a tunnel (SSM or SSH port
        forwarding) instead: the RDS address override points at the stand-in. SANDBOX_RDS_URL is the
        stand-in itself, for looking at the data (as a query editor in the AWS console would); no task reads it.
        """
        state = self.load_state()
        if not state.get("terraform", {}).get("applied"):
            raise DevopsError(f"no sandbox running in {self.dir}: start it with `inv sandbox.up`")
        neon, rds = self._server(state, "neon"), self._server(state, "rds")
        routes = state["network"]["routes"]
        values: dict[str, str | None] = {
            # The tasks reach each stand-in through the sandbox's network, over TLS verified with its CA.
            "NEON_DATABASE_URL": dataclasses.replace(neon, port=routes["neon"]).url(),
            **self.aws_environment(state),
            "AWS_ENDPOINT_URL": f"http://{HOST}:{routes['aws']}",
            "INVOKE_DEVOPS_RDS_ADDRESS": f"{HOST}:{routes['rds']}" if tunnel else None,
            "INVOKE_DEVOPS_ALB_ADDRESS": f"{HOST}:{state['app']['port']}" if "app" in state else None,
            "INVOKE_DEVOPS_NEON_CA_FILE": state["ca"],
            "INVOKE_DEVOPS_RDS_CA_FILE": state["ca"],
            "SANDBOX_RDS_URL": rds.url(verified=True),
        }
        if self.settings.sandbox_dir != Settings().sandbox_dir:
            values["INVOKE_DEVOPS_SANDBOX_DIR"] = str(self.dir)
        return values

    def env_lines(self, tunnel: bool = False) -> list[str]:
        """POSIX shell lines for ``eval "$(inv sandbox.env [--tunnel])"``."""
        return [f"unset {k}" if v is None else f"export {k}={shlex.quote(v)}"
                for k, v in self.env_values(tunnel).items()]

    def environment(self, base: dict[str, str] | None = None, tunnel: bool = False) -> dict[str, str]:
        """A process environment as after ``eval "$(inv sandbox.env [--tunnel])"`` (for tests and benchmarks)."""
        env = dict(os.environ if base is None else base)
        for key, value in self.env_values(tunnel).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env
