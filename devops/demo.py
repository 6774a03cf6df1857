"""The demo: the whole story on the sandbox, the first thing a new user runs (`./toolbox/inv demo`).

Each step is a real task run as its own `inv` process with the sandbox's environment, exactly as a user
would type it after `eval "$(inv sandbox.env --tunnel)"`. A sandbox that is already up is used and left up; one the
demo starts, it also tears down, even when a step fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg2

from devops import hints
from devops.config import REPO_ROOT, Settings
from devops.console import Console
from devops.errors import DevopsError
from devops.sandbox import SAMPLE_DATA, Sandbox
from devops.sandbox.provider_mirror import use_provider_mirror

TABLES_SQL = """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                AND c.relkind IN ('r', 'p') ORDER BY 1"""


# The tables devops/sandbox/sample_data.sql creates.
SAMPLE_TABLES = ("project_technologies", "contact_messages", "projects", "technologies")


class DemoError(DevopsError):
    pass


class Demo:
    def __init__(self, settings: Settings, console: Console):
        self.settings = settings
        self.console = console
        self.sandbox = Sandbox(settings, console)
        self.step_number = 0
        self.steps = 8

    def step(self, title: str, why: str) -> None:
        self.step_number += 1
        self.console.line()
        self.console.line(f"== {self.step_number}/{self.steps}  {title}")
        for line in textwrap.wrap(why, 96):
            self.console.line(f"   {line}")
        self.console.line()

    def inv(self, *args: str) -> None:
        """One task, as a user would run it in a shell pointed at the sandbox, reaching its private RDS through
        the tunnel `sandbox.env --tunnel` models (from a laptop on AWS: SSM or SSH port forwarding)."""
        env = self.sandbox.environment(tunnel=True)
        env["INVOKE_DEVOPS_SANDBOX_DIR"] = str(self.settings.sandbox_dir)
        env["INVOKE_DEVOPS_TOOLBOX"] = "host"  # the demo already runs where the tasks should
        command = hints.inv(" ".join(args))  # as the user would type it
        self.console.line(f"$ {command}")
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO_ROOT, env=env,
                              stdin=subprocess.DEVNULL).returncode
        if code != 0:
            raise DemoError(f"`{command}` failed with exit code {code} (its output is above)")
        self.console.info(f"`{command}` done in {time.monotonic() - started:.0f}s")

    def query(self, url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = psycopg2.connect(url, connect_timeout=10)
        except psycopg2.Error as exc:
            raise DemoError(f"cannot connect to a sandbox database: {str(exc).strip().splitlines()[0]}") from None
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        except psycopg2.Error as exc:
            raise DemoError(f"the demo's query failed: {str(exc).strip().splitlines()[0]}") from None
        finally:
            conn.close()

    def row_counts(self, url: str) -> list[list[Any]]:
        tables = [row[0] for row in self.query(url, TABLES_SQL)]
        return [[table, self.query(url, f'SELECT count(*) FROM "{table}"')[0][0]] for table in tables]

    def run(self) -> None:
        self.console.banner("DEMO: the dev environment's pilot light, end to end",
                            "Target: sandbox (local stand-ins: PostgreSQL for Neon and RDS, moto for AWS)",
                            f"Sandbox folder: {self.settings.sandbox_dir}")
        started_here = not self.sandbox.is_up()
        self.steps = 8 if started_here else 7  # the last one tears down what the demo started
        # The provider mirror's CLI configuration lives as long as the demo (one process), and goes with it.
        with tempfile.TemporaryDirectory(prefix="devops-demo-tfcli-") as cli_dir:
            if use_provider_mirror(Path(cli_dir)):
                self.console.info("Terraform uses this machine's provider mirror (no registry access here)")
            try:
                self._story(started_here)
            finally:
                if started_here:
                    self.step_number = self.steps - 1  # the last step, even when the story stopped early
                    self.step("Tear the sandbox down", "Everything the demo started stops, and its folder goes.")
                    self.sandbox.down()
                else:
                    self.console.info("The sandbox was up before the demo: left running "
                                      f"(`{hints.inv('sandbox.down')}` stops it)")

    def _story(self, started_here: bool) -> None:
        self.step("Start the sandbox",
                  "Real PostgreSQL servers play Neon and RDS, a moto server plays AWS, and the real Terraform "
                  "code is applied against it in pilot light (about a minute and a half).")
        self.sandbox.up()
        env = self.sandbox.env_values()
        neon_url, rds_url = env["NEON_DATABASE_URL"], env["SANDBOX_RDS_URL"]

        self.step("Sample data in the Neon stand-in",
                  "While dev is off, the app's data lives in Neon. The sandbox loaded the sample data:")
        if self.query(neon_url, "SELECT to_regclass('public.projects')")[0][0] is None:
            # A sandbox used since it started may hold other data: the story needs the sample's projects.
            self.console.info("The Neon stand-in holds other data (the sandbox was used): loading the sample data")
            self.query(neon_url, f"DROP TABLE IF EXISTS {', '.join(SAMPLE_TABLES)} CASCADE; {SAMPLE_DATA.read_text()}")
        self.console.table(self.row_counts(neon_url), headers=["table", "rows in Neon"])

        self.step("Activate, bringing the data along",
                  "Neon's data goes to RDS through S3 (with a safety copy of RDS first), then Terraform "
                  "switches the environment to active: ECS services, ALB, CloudFront, service discovery.")
        self.inv("activate", "--sync-data", "--yes")

        self.step("Validate", "Every check of the active mode, in about a second.")
        self.inv("validate")

        title = f"Edited in RDS by the demo at {time.strftime('%H:%M:%S')}"
        self.step("Change a row in RDS",
                  "While dev is on, people work against RDS. One project's title changes there:")
        slug = self.query(rds_url, "UPDATE projects SET title = %s WHERE id = (SELECT min(id) FROM projects) "
                                   "RETURNING slug", (title,))[0][0]
        self.console.info(f"RDS: projects[{slug}].title = {title!r}")
        before = self.query(neon_url, "SELECT title FROM projects WHERE slug = %s", (slug,))[0][0]
        self.console.info(f"Neon still has: {before!r}")

        self.step("Deactivate, bringing the data back",
                  "RDS's data goes back to Neon through S3 (with a safety copy of Neon first), then Terraform "
                  "removes the active set: the environment idles in pilot light again.")
        self.inv("deactivate", "--sync-data", "--yes")

        self.step("The change arrived in Neon", "The row edited in RDS, read back from the Neon stand-in:")
        after = self.query(neon_url, "SELECT title FROM projects WHERE slug = %s", (slug,))[0][0]
        if after != title:
            raise DemoError(f"Neon has {after!r} for {slug}, expected {title!r}: the change did not arrive")
        self.console.passed(f"Neon: projects[{slug}].title = {after!r}")
        self.console.table(self.row_counts(neon_url), headers=["table", "rows in Neon"])


def run_demo(settings: Settings, console: Console) -> None:
    Demo(settings, console).run()
    console.line()
    console.passed("Demo complete: activate, validate, deactivate, with the data round trip through S3")
