"""A sync over the sandbox's network (devops/sandbox/network.py): its round trips and connections to Neon, RDS
and AWS, counted (a count is stable where a time is not). From a laptop each round trip costs 20-80 ms.

The direct pipe (pg_dump -Fc | pg_restore --clean, the same client tools) runs through the same network as
the measure of what the tools cost by themselves: to Neon, the sync's round trips beyond the pipe's are the
project's, and those stay few and do not grow with the number of tables; to RDS the sync makes far fewer
than pg_restore (its statements go in batches). `sync.restore` of the sync's dump, `validate` and `sync.list`
are counted too.
"""

from __future__ import annotations

import json
import os
import subprocess
from urllib.parse import unquote, urlsplit

import pytest

from devops.sandbox.network import Counts
from tests.helpers import inv

pytestmark = pytest.mark.sandbox

# Neon: the sync's round trips beyond its pg_dump's (the pipe's). Measured 12 (on the sample-like "rich" data
# and on 300 tables alike): its own connection (6 with TLS), the server's identity, the counts, the snapshot,
# its read (tables, checksums, schema hash, sequences: one statement), its end.
MAX_EXTRA_NEON = 15
# RDS: the restore's statements go in batches (script.in_batches) where pg_restore sends each alone:
# measured 36 round trips against the pipe's 75 on "rich", 667 against 5,057 on 300 tables.
# The connections a sync opens: Neon: the sync's own and pg_dump's; RDS: the sync's own, psql's (the
# restore) and the progress watcher's.
MAX_CONNECTIONS = {"neon": 2, "rds": 3}
# AWS: the requests (the emulator closes each connection after its answer, where AWS keeps them: so the
# set-ups counted, TCP's and TLS's, are one a request, and only the requests are compared). Measured: 18
# (a PUT of a small body is one round trip: aws.py sends it without asking for "100 Continue" first), and one
# more since the plan reads RDS's FreeStorageSpace from CloudWatch (devops/sync/storage.py).
MAX_AWS_REQUESTS = 19
# `inv sync.restore` of the sync's dump into RDS: the same restore (its RDS round trips measured 36 and 666
# where the sync's were 36 and 668, on "rich" and on 300 tables), the dump read from S3, nothing of Neon;
# 16 AWS requests on both, and RDS's FreeStorageSpace since.
MAX_EXTRA_RESTORE_RDS = 2
MAX_RESTORE_AWS_REQUESTS = 17
# `inv validate` in pilot light: one request per question, all at once (measured 21: the credentials, the
# state's HEAD, 3 ECR repositories x2, the bucket, its 4 protections, 2 listings, RDS's description (one for
# the instance check and the connection check), its secret, the VPC), one RDS connection (TLS login and
# `select 1`: measured 10 round trips at 20 ms, 4 runs out of 4; 9-11 at 0 ms, a race), one Neon connection
# (the Neon check: TLS login and its one query, measured 9 round trips at 20 ms, 4 runs out of 4).
MAX_VALIDATE_AWS_REQUESTS = 21
MAX_VALIDATE_RDS_ROUND_TRIPS = 10
MAX_VALIDATE_NEON_ROUND_TRIPS = 9


def requests(counts) -> int:
    """AWS's requests: the round trips after each connection's set-up (one request a connection here)."""
    return counts.round_trips - counts.setup_round_trips


def tls_env(sandbox_env: dict[str, str], side: str) -> dict[str, str]:
    """The libpq environment a task gives its tools for ``side``, through the sandbox's network."""
    ca = sandbox_env[f"INVOKE_DEVOPS_{side.upper()}_CA_FILE"]
    if side == "neon":
        url = urlsplit(sandbox_env["NEON_DATABASE_URL"])
        where = {"PGHOST": url.hostname, "PGPORT": str(url.port)}
    else:
        url = urlsplit(sandbox_env["SANDBOX_RDS_URL"])
        address, port = sandbox_env["INVOKE_DEVOPS_RDS_ADDRESS"].split(":")
        endpoint = json.loads(sandbox_env["DEVOPS_TEST_STATE"])["rds_endpoint"]
        where = {"PGHOST": endpoint, "PGHOSTADDR": address, "PGPORT": port}
    return {**os.environ, **where, "PGUSER": unquote(url.username), "PGPASSWORD": unquote(url.password),
            "PGDATABASE": url.path.lstrip("/"), "PGSSLMODE": "verify-full", "PGSSLROOTCERT": ca}


def pipe(sandbox_env: dict[str, str]) -> None:
    dump = subprocess.Popen(["pg_dump", "-Fc", "--no-owner", "--no-acl"], env=tls_env(sandbox_env, "neon"),
                            stdout=subprocess.PIPE)
    restore = subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-acl", "-d",
                              tls_env(sandbox_env, "rds")["PGDATABASE"]], env=tls_env(sandbox_env, "rds"),
                             stdin=dump.stdout, capture_output=True, text=True)
    dump.stdout.close()
    assert dump.wait() == 0 and restore.returncode == 0, restore.stderr


def counted(network, run) -> dict[str, Counts]:
    network.reset()
    run()
    return network.counts()


def sync(env: dict[str, str]) -> dict:
    result = inv(env, "sync.neon-to-rds", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def env(sandbox, sandbox_env, server_of_major):
    """RDS on 18, as Neon, behind the network's RDS route: the pipe's pg_restore 18 restores into a server of
    its own major only (into an older one it sends settings that server lacks; the sync leaves them out)."""
    network = sandbox.network()
    network.route("rds", urlsplit(server_of_major("18", "rds")).port)
    yield {**sandbox_env, "DEVOPS_TEST_STATE": json.dumps({"rds_endpoint": sandbox.load_state()["rds_endpoint"]})}
    network.route("rds", sandbox.load_state()["rds"]["port"])


def measure(sandbox, env) -> tuple[dict[str, Counts], dict[str, Counts], dict[str, Counts]]:
    """(the pipe's counts, a sync's, a restore's): the sync is the second of two, as a user's next sync is (the
    target holds the last sync's data: its safety copy is that dump); the restore puts that sync's dump back
    into RDS."""
    network = sandbox.network()
    piped = counted(network, lambda: pipe(env))
    sync(env)
    report = {}
    synced = counted(network, lambda: report.update(sync(env)))
    key = urlsplit(report["dump"]["url"]).path.lstrip("/")
    restored = counted(network, lambda: restore(env, key))
    return piped, synced, restored


def restore(env: dict[str, str], key: str) -> None:
    result = inv(env, "sync.restore", "--key", key, "--to", "rds", "--yes", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "ok", result.stdout + result.stderr


def extra(piped: dict[str, Counts], synced: dict[str, Counts]) -> dict[str, int]:
    return {side: synced[side].round_trips - piped[side].round_trips for side in ("neon", "rds")}


def test_round_trips_beyond_the_tools_own_are_few_and_do_not_grow_with_the_tables(sandbox, env, databases):
    databases(neon="rich", rds="keep_me")
    small = measure(sandbox, env)
    databases(neon="big_seed_1", rds="big_seed_2")  # 300 tables, 1,000+ indexes, triggers, partitions
    big = measure(sandbox, env)
    print("round trips and connections (pipe, sync, restore): small", small, "big", big)
    for piped, synced, restored in (small, big):
        assert synced["neon"].round_trips - piped["neon"].round_trips <= MAX_EXTRA_NEON, (piped, synced)
        assert synced["rds"].round_trips < piped["rds"].round_trips, (piped, synced)
        for side in ("neon", "rds"):
            assert synced[side].connections <= MAX_CONNECTIONS[side], (side, synced)
        assert requests(synced["aws"]) <= MAX_AWS_REQUESTS, synced["aws"]
        # sync.restore: the same restore into RDS, from S3; Neon is not asked anything.
        assert restored["neon"].connections == 0, restored
        assert restored["rds"].connections <= MAX_CONNECTIONS["rds"], restored
        assert restored["rds"].round_trips - synced["rds"].round_trips <= MAX_EXTRA_RESTORE_RDS, (synced, restored)
        assert requests(restored["aws"]) <= MAX_RESTORE_AWS_REQUESTS, restored["aws"]
    # The project's round trips do not grow with the number of tables (the tools' own do: a statement each).
    small_extra, big_extra = extra(*small[:2]), extra(*big[:2])
    assert big_extra["neon"] <= small_extra["neon"] + 2, (small_extra, big_extra)
    assert big[0]["rds"].round_trips > 5 * small[0]["rds"].round_trips  # pg_restore's own: one per statement
    assert big[1]["rds"].round_trips < big[0]["rds"].round_trips / 5  # the sync's: a batch per table's rows


def test_validate_and_the_listing_ask_each_thing_once(sandbox, sandbox_env):
    network = sandbox.network()
    ran = {}
    # A user's next run: the outputs read last time are the state's (a test before may have left others, and
    # then every check that uses them runs again, rightly, with the state's).
    inv(sandbox_env, "validate")
    # At a laptop's RTT: at 0 ms the order in which two bytes that need no answer (TLS 1.3's session tickets,
    # the login's next message) reach the proxy is a race, and the count of who spoke after whom with it.
    network.set_rtt(20)
    try:
        validated = counted(network, lambda: ran.update(validate=inv(sandbox_env, "validate")))
    finally:
        network.set_rtt(sandbox.settings.sandbox_rtt_ms)
    print("validate", validated)
    assert ran["validate"].returncode == 0, ran["validate"].stdout
    assert requests(validated["aws"]) <= MAX_VALIDATE_AWS_REQUESTS, validated
    assert validated["rds"].connections == 1 and validated["rds"].round_trips <= MAX_VALIDATE_RDS_ROUND_TRIPS
    assert validated["neon"].connections == 1 and validated["neon"].round_trips <= MAX_VALIDATE_NEON_ROUND_TRIPS
    # sync.list: the state's HEAD (the bucket's name), the bucket's check, a listing per side, each dump's manifest.
    listing = {}
    listed = counted(network, lambda: listing.update(json.loads(inv(sandbox_env, "sync.list", "--json").stdout)))
    with_manifest = [d for d in listing["dumps"] if d["sha256"]]
    assert requests(listed["aws"]) == 4 + len(with_manifest), (listed, listing)
    assert listed["rds"].connections == listed["neon"].connections == 0
