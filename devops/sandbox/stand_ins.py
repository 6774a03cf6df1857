"""The stand-ins as one object: start them, say where they are, point the tasks at them, stop them.

Each component's own module knows how to start and describe it; the Sandbox starts them in order, records each
in the state file as it comes up, and is what the tasks, the tests, the demo and the benches hold."""

from __future__ import annotations

import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devops import aws, hints
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.sandbox import certificates, rds_storage
from devops.sandbox.app_stand_in import describe_app, start_app
from devops.sandbox.aws_emulator import (describe_emulator, emulator_client, emulator_settings, start_emulator,
                                         write_tasks_config)
from devops.sandbox.network_launcher import describe_network, network_control, start_network
from devops.sandbox.postgres import HOST, PostgresCluster, Server, find_pg_bin, unprivileged_user
from devops.sandbox.postgres_stand_ins import (NEON_DATABASE, NEON_ROLE, cluster_of, create_app_database,
                                               create_neon_roles, describe_servers, load_sample_data,
                                               name_the_rds_endpoint, record, server_of, start_server, stop_servers)
from devops.sandbox.processes import elsewhere, pid_alive, pid_namespace, terminate_group
from devops.sandbox.shell_environment import env_values, shell_lines, with_values
from devops.sandbox.state_file import StateFile
from devops.sandbox.terraform_apply import (apply_terraform, describe_terraform, sandbox_terraform, state_bucket,
                                            terraform_default)
from devops.terraform import Terraform

COMPONENTS = ("neon", "rds", "emulator", "app", "network", "terraform")
# The components that are processes of their own, in the order down stops them: the network before what it
# leads to.
PROCESSES = ("network", "emulator", "app")


class Sandbox:
    def __init__(self, settings: Settings, console: Console | None = None):
        self.settings = settings
        self.console = console or Console()
        self.dir = settings.sandbox_dir
        self.state_file = StateFile(self.dir)

    # ---- where things are --------------------------------------------------------------------

    def load_state(self) -> dict[str, Any]:
        """What runs where ({} when there is no sandbox)."""
        return self.state_file.load()

    def server(self, name: str, state: dict[str, Any] | None = None) -> Server:
        """The stand-in ``name`` ("neon" or "rds"): its port, roles and passwords, to connect to it directly."""
        return server_of(state or self.load_state(), name)

    def cluster(self, name: str) -> PostgresCluster:
        """The PostgreSQL server of one stand-in ("neon" or "rds")."""
        return cluster_of(self.dir, self.load_state(), name)

    def emulator_settings(self, state: dict[str, Any]) -> Settings:
        return emulator_settings(self.settings, state)

    def client(self, service: str, state: dict[str, Any] | None = None) -> Any:
        """A client for the sandbox's emulator."""
        return emulator_client(self.settings, state or self.load_state(), service)

    def terraform(self, state: dict[str, Any] | None = None) -> Terraform:
        """Terraform pointed at the sandbox's emulator and its own data dir."""
        return sandbox_terraform(self.settings, self.dir, state or self.load_state())

    def network(self) -> Any:
        """The control of the sandbox's network (devops.sandbox.network.Network): its round-trip time, what
        crossed it."""
        return network_control(self.load_state())

    def majors(self) -> dict[str, str]:
        """The stand-ins' PostgreSQL majors: Neon's setting, and RDS's (Terraform's db_engine_version default
        unless set)."""
        return {"neon": self.settings.sandbox_neon_major,
                "rds": self.settings.sandbox_rds_major or terraform_default(self.settings, "db_engine_version")}

    def limits(self, name: str) -> dict[str, int | str]:
        """The server limits of the stand-in ``name`` (neon, rds), as the real service sets them; Neon's also
        closes idle connections (idle_session_timeout, in milliseconds), as its compute does when it suspends,
        and reports its project's size limit (neon.max_cluster_size: a placeholder setting here)."""
        limits = {setting: getattr(self.settings, f"sandbox_{name}_{setting}")
                  for setting in ("max_connections", "max_locks_per_transaction")}
        if name == "neon":
            limits["idle_session_timeout"] = round(self.settings.sandbox_neon_idle_seconds * 1000)
            limits["neon.max_cluster_size"] = f"{self.settings.sandbox_neon_max_cluster_size}MB"  # as Neon shows it
        return limits

    # ---- status ------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """One row per component: name, address, running, detail."""
        state = self.load_state()
        rows = describe_servers(state)
        describe = {"emulator": describe_emulator, "app": describe_app,
                    "network": lambda s: describe_network(s, self.settings.sandbox_rtt_ms),
                    "terraform": lambda s: describe_terraform(self.settings, s)}
        rows += [describe[name](state) for name in describe if name in state]
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
        run_as = unprivileged_user()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # the PostgreSQL user must reach its data folders
        # pid_namespace: where its PIDs mean its processes (devops.sandbox.processes.runs).
        state: dict[str, Any] = {"project_name": self.settings.project_name, "run_as": run_as,
                                 "pid_namespace": pid_namespace(),
                                 "pg_bin": {name: str(path) for name, path in bin_dirs.items()},
                                 "rds_major": majors["rds"]}
        state["ca"] = str(certificates.make_ca(self.dir / "ca"))
        self._record(state, "emulator", start_emulator(self.dir, self.console))
        self._record(state, "app", start_app(self.dir, self.console))
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Terraform (a minute and a half of provider waits against the emulator) runs while the
            # PostgreSQL servers are created and loaded.
            applied = pool.submit(apply_terraform, self.settings, self.dir, state, self.console)
            self._start_servers(state, bin_dirs)
            outputs = applied.result()
        state["terraform"] = {"applied": True, "state_bucket": state_bucket(self.settings)}
        self._give_rds_its_master_user(state, outputs)
        self._record(state, "network", start_network(self.dir, state, self.settings.sandbox_rtt_ms, self.console))
        write_tasks_config(self.dir, outputs["database_endpoint"], state["rds"]["port"], state["app"]["port"],
                           state["ca"])
        # The emulator's CloudWatch reports the stand-in's free storage as RDS's FreeStorageSpace.
        rds_storage.write_config(self.dir, outputs["db_instance_identifier"], cluster_of(self.dir, state, "rds").data,
                                 self.settings.sandbox_rds_storage_mb)
        self.console.info(f"RDS stand-in: role {state['rds']['user']} has the password from "
                          f"{outputs['database_secret_arn']}")
        return state

    def _record(self, state: dict[str, Any], component: str, value: dict[str, Any]) -> None:
        state[component] = value
        self.state_file.save(state)

    def _start_servers(self, state: dict[str, Any], bin_dirs: dict[str, Path]) -> None:
        """Both stand-ins; Neon with its owner role, its database and the sample data (RDS's role and
        database come from Terraform's outputs)."""
        for name in ("neon", "rds"):
            server = start_server(self.dir, name, bin_dirs[name], state["run_as"], state["ca"], self.limits(name),
                                  self.console)
            self._record(state, name, record(server))
        neon = server_of(state, "neon")
        create_app_database(neon, NEON_ROLE, secrets.token_urlsafe(18), NEON_DATABASE)
        create_neon_roles(neon)
        self._record(state, "neon", record(neon))
        load_sample_data(neon)
        self.console.info(f"Neon stand-in loaded with sample data ({HOST}:{neon.port}/{neon.database})")

    def _give_rds_its_master_user(self, state: dict[str, Any], outputs: dict[str, Any]) -> None:
        """The RDS stand-in's role gets the name and password the emulated RDS put in Secrets Manager, and its
        certificate the emulated endpoint's name."""
        rds = server_of(state, "rds")
        secret = aws.read_secret_json(self.emulator_settings(state), outputs["database_secret_arn"],
                                      self.client("secretsmanager", state))
        create_app_database(rds, secret["username"], secret["password"], outputs["database_name"])
        state["rds"] = record(rds)
        state["rds_endpoint"] = outputs["database_endpoint"]
        name_the_rds_endpoint(self.dir, state, outputs["database_endpoint"])

    def set_rds_storage(self, storage_mb: int) -> None:
        """The RDS stand-in's storage in MB as the emulator's CloudWatch counts it from now on (its FreeStorageSpace:
        this less the stand-in's data folder); 0: the emulated instance's allocated storage."""
        rds_storage.set_storage(self.dir, storage_mb)

    def rds_disk_usage(self) -> int:
        """The bytes the RDS stand-in's data folder takes on disk: what FreeStorageSpace counts as used."""
        return rds_storage.disk_usage(self.cluster("rds").data)

    # ---- the app stand-in, for tests that take it away -----------------------------------------

    def stop_app(self) -> None:
        """Stop the app stand-in (tests use it to make the health URL fail)."""
        pid = self.load_state().get("app", {}).get("pid")
        if pid_alive(pid):
            terminate_group(pid)

    def start_app(self) -> None:
        """(Re)start the app stand-in on its recorded port."""
        self.stop_app()
        state = self.load_state()
        self._record(state, "app", start_app(self.dir, self.console, state["app"]["port"]))

    # ---- down --------------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop everything the sandbox started and remove its folder."""
        state = self.load_state()
        if not self.dir.exists():
            if not quiet:
                self.console.info(f"No sandbox in {self.dir}: nothing to stop")
            return
        if elsewhere(state):
            # Started in another PID namespace: its PIDs here are other processes, or none. Nothing here can
            # stop what still runs, and nothing here is signalled; what runs no more leaves only its folder.
            if any(row["running"] for row in self.status() if row["component"] != "terraform"):
                raise DevopsError(f"the sandbox in {self.dir} runs in another process namespace (started on this "
                                  "host, or in a toolbox container): stop it from there, running sandbox.down the "
                                  "way sandbox.up was run")
        else:
            for component in PROCESSES:
                pid = state.get(component, {}).get("pid")
                if pid_alive(pid):
                    terminate_group(pid)
            stop_servers(self.dir, state)
        shutil.rmtree(self.dir, ignore_errors=True)
        if not quiet:
            self.console.passed(f"Sandbox stopped and {self.dir} removed")

    # ---- env ---------------------------------------------------------------------------------

    def env_values(self, tunnel: bool = False) -> dict[str, str | None]:
        """The variables that point every task (and psql) at the sandbox; None means unset
        (devops.sandbox.shell_environment.env_values)."""
        state = self.load_state()
        if not state.get("terraform", {}).get("applied"):
            raise DevopsError(f"no sandbox running in {self.dir}: start it with `{hints.inv('sandbox.up')}`")
        return env_values(self.settings, self.dir, state, tunnel)

    def env_lines(self, tunnel: bool = False) -> list[str]:
        """POSIX shell lines for ``eval "$(inv sandbox.env [--tunnel])"``."""
        return shell_lines(self.env_values(tunnel))

    def environment(self, base: dict[str, str] | None = None, tunnel: bool = False) -> dict[str, str]:
        """A process environment as after ``eval "$(inv sandbox.env [--tunnel])"`` (for tests and benchmarks)."""
        return with_values(self.env_values(tunnel), base)
