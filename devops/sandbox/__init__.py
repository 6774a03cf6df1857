"""The sandbox: local stand-ins for everything the tasks talk to, so nobody needs AWS or Neon to try them.

- two real PostgreSQL servers on 127.0.0.1, one playing Neon and one playing RDS;
- a moto server on 127.0.0.1 playing AWS;
- the real terraform/environments/dev applied against it by environment alone (AWS_ENDPOINT_URL, test
  credentials, TF_DATA_DIR, and the S3 backend pointed at a state bucket in the emulator);
- the RDS stand-in's master role given the password the emulated RDS put in Secrets Manager; the emulated
  RDS endpoint is private, as on AWS: it leads to the stand-in only inside the emulator's ECS tasks (the
  VPC), or through the RDS address override that `sandbox.env --tunnel` sets (the model of a tunnel);
- an app stand-in (python -m http.server answering GET /api/health with 200), which the ALB address
  override (devops.alb_address) points `inv validate`'s health check at, since the emulated ALB's DNS name
  resolves nowhere.

Everything lives in one git-ignored folder (devops.sandbox_dir); ``down`` stops it all and removes it.

The package, by what changes where:
- ``postgres``: a major's server binaries and one PostgreSQL server (a new server setting goes in
  SERVER_SETTINGS there);
- ``processes``: ports, PIDs, waiting, stopping a process group;
- one module per component, each starting it and describing it for ``sandbox.status``:
  ``postgres_stand_ins`` (the Neon and RDS servers, their application role and database, the sample data;
  ``neon_size_limit``: the library, neon_size_limit.c, that makes the Neon stand-in's server refuse to grow
  past neon.max_cluster_size),
  ``aws_emulator`` (moto, its clients, what its ECS tasks need), ``app_stand_in``, ``network_launcher`` (the
  process of ``network``, the delaying, counting proxy), ``terraform_apply`` (Terraform against the emulator);
  ``certificates``: the sandbox's CA and the servers' certificates; ``rds_storage``: the RDS stand-in's
  FreeStorageSpace, which the emulator's CloudWatch reports (its allocated storage less its data folder);
- ``state_file``: state.json, the record of what runs where;
- ``stand_ins``: the Sandbox, which starts the components in order, describes and stops them all (a new
  stand-in is a module of its own, started in Sandbox._start and listed in COMPONENTS);
- ``shell_environment``: the variables that point the tasks at the sandbox (what ``sandbox.env`` prints);
- ``provider_mirror``: Terraform's providers from a local mirror (the tests, the demo, the benches);
- ``sso_stand_in``: IAM Identity Center's OIDC service and portal, which a test starts beside the sandbox
  (AWS_ENDPOINT_URL_SSO[_OIDC]) to sign in as an SSO profile does; ``totp``: an MFA device's codes, which the
  emulator's STS checks (devops/emulator.py) and tests type;
- ``task_bodies``: what the sandbox.* tasks run, and their settings (task_settings).
"""

from devops.sandbox.postgres import HOST, PostgresCluster, Server, find_pg_bin, server_major, unprivileged_user
from devops.sandbox.postgres_stand_ins import SAMPLE_DATA, create_app_database
from devops.sandbox.processes import free_port, pid_alive, port_open
from devops.sandbox.stand_ins import Sandbox
from devops.sandbox.task_bodies import run_down, run_status, run_up, task_settings
from devops.sandbox.terraform_apply import terraform_default

__all__ = ["HOST", "SAMPLE_DATA", "PostgresCluster", "Sandbox", "Server", "create_app_database", "find_pg_bin",
           "free_port", "pid_alive", "port_open", "run_down", "run_status", "run_up", "server_major", "task_settings",
           "terraform_default", "unprivileged_user"]
