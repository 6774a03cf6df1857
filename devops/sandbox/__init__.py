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
- ``postgres``: a major's server binaries and one stand-in server (a new server setting goes in
  SERVER_SETTINGS there);
- ``processes``: ports, PIDs, waiting;
- ``stand_ins``: the Sandbox itself, which starts, describes and stops them all, and the variables that
  point the tasks at them (a new stand-in is a component there);
- ``provider_mirror``: Terraform's providers from a local mirror (the tests, the demo, the benches);
- ``task_bodies``: what the sandbox.* tasks run.
"""

from devops.sandbox.postgres import HOST, PostgresCluster, Server, _unprivileged_user, find_pg_bin, server_major
from devops.sandbox.processes import free_port, pid_alive, port_open
from devops.sandbox.stand_ins import SAMPLE_DATA, Sandbox, terraform_default
from devops.sandbox.task_bodies import run_down, run_status, run_up

__all__ = ["HOST", "SAMPLE_DATA", "PostgresCluster", "Sandbox", "Server", "_unprivileged_user", "find_pg_bin", "free_port",
           "pid_alive", "port_open", "run_down", "run_status", "run_up", "server_major", "terraform_default"]
