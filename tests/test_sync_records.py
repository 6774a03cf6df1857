"""The records and the lock under concurrency, and manifests that cannot be read: real syncs against the
sandbox's servers, S3 through a real HTTP proxy in front of the emulator where a race must be forced."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import time

from devops.config import REPO_ROOT
from devops.sync.store import LOCK_KEY, utcnow
from tests import dbtools
from tests.helpers import INV, inv, s3_state


def errors_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def key_of(url: str) -> str:
    return url.split("/", 3)[3]


def live_holder(purpose: str) -> dict:
    return {"host": "other-laptop", "pid": 4242, "purpose": purpose, "started": utcnow().isoformat()}


# --------------------------------------------------------------------------------------------------
# Two syncs at once


def test_two_syncs_started_at_once_one_runs_the_other_refuses(sandbox, sandbox_env, sandbox_settings, prepared,
                                                              neon, rds, proxy):
    # Slow parts keep whichever sync takes the lock holding it while the other reaches it.
    proxy.key_prefix, proxy.part_delay = "neon-dumps/", 3.0
    env = {**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}
    bucket = sandbox_settings.bucket_name
    processes = [subprocess.Popen([*INV, "sync.neon-to-rds", "--yes", "--json"], env=env, cwd=REPO_ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                 for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in processes]
    assert sorted(code for *_, code in results) == [0, 1], results
    winner = next(r for r in results if r[3] == 0)
    loser = next(r for r in results if r[3] == 1)
    errors = [line for line in loser[2].splitlines() if line.startswith("[ERROR]")]  # --json: the plan is on stderr
    assert len(errors) == 1 and "Traceback" not in loser[2], loser[2]
    assert errors[0].startswith("[ERROR] another sync is running: sync neon-to-rds on "
                                f"{socket.gethostname()} (pid {winner[0]})"), errors[0]
    # The winner did it all; the loser wrote nothing: no object, no upload, no lock.
    report = json.loads(winner[1])
    assert report["status"] == "ok" and dbtools.snapshot(rds) == dbtools.snapshot(neon)
    state = s3_state(sandbox, bucket)
    dump = key_of(report["dump"]["url"])
    written = {dump, dump.replace(".dump", ".manifest.json"), key_of(report["safety_copy"]["url"]),
               key_of(report["safety_copy"]["url"]).replace(".dump", ".manifest.json")}
    assert set(state["objects"]) == written and state["uploads"] == []
    # The records stay in order: the next sync's keys come after, and it finds the winner's record of RDS.
    dbtools.execute(neon, "UPDATE app.customers SET name = 'next' WHERE id = 1")
    after = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert after["status"] == "ok" and key_of(after["dump"]["url"]) > dump
    assert after["divergence"]["verdict"] == "unchanged"
    assert after["divergence"]["last_recorded"]["dump"] == dump


def test_the_keys_are_named_when_the_lock_is_taken(sandbox, sandbox_env, sandbox_settings, prepared, rds, proxy):
    # A sync whose lock is taken late (here: 3 s after it asked, as after a slow confirmation) names its
    # records after it holds the lock, not after its start.
    env = {**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}
    seen = {}

    def late_lock(method: str, key: str) -> None:
        if method == "PUT" and key == LOCK_KEY and not seen:
            seen["at"] = utcnow()
            time.sleep(3)  # the injected delay itself, not a wait for something

    proxy.before = late_lock
    result = inv(env, "sync.neon-to-rds", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    named = key_of(report["dump"]["url"]).split("/")[1].split(".")[0]
    held = seen["at"] + dt.timedelta(seconds=3)  # the lock was held from here on
    assert named >= held.strftime("%Y-%m-%dT%H-%M-%S"), (named, seen)
    assert key_of(report["safety_copy"]["url"]).split("/")[1].split(".")[0] == named


# --------------------------------------------------------------------------------------------------
# The lock is removed only as it was seen (If-Match on its ETag)


def test_the_release_leaves_a_lock_another_sync_took_meanwhile(sandbox, sandbox_env, sandbox_settings, prepared,
                                                               proxy):
    s3, bucket = sandbox.client("s3"), sandbox_settings.bucket_name
    other = live_holder("sync rds-to-neon")

    def replace_before_release(method: str, key: str) -> None:
        # Between this sync's last look at its lock and its delete, another sync broke it and took it.
        if method == "DELETE" and key == LOCK_KEY:
            s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=json.dumps(other).encode())

    proxy.before = replace_before_release
    result = inv({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, "sync.neon-to-rds", "--yes")
    assert result.returncode == 0, result.stderr
    assert json.loads(s3.get_object(Bucket=bucket, Key=LOCK_KEY)["Body"].read()) == other
    s3.delete_object(Bucket=bucket, Key=LOCK_KEY)


def test_break_lock_removes_only_the_lock_it_saw(sandbox, sandbox_env, sandbox_settings, prepared, rds, proxy):
    s3, bucket = sandbox.client("s3"), sandbox_settings.bucket_name
    stale = {**live_holder("sync rds-to-neon"), "started": "2026-01-01T00:00:00+00:00"}
    s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=json.dumps(stale).encode())
    newer = live_holder("sync neon-to-rds")

    def taken_meanwhile(method: str, key: str) -> None:
        # Someone else broke the stale lock first and now holds a live one.
        if method == "DELETE" and key == LOCK_KEY:
            s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=json.dumps(newer).encode())

    proxy.before = taken_meanwhile
    before = dbtools.snapshot(rds)
    try:
        result = inv({**sandbox_env, "AWS_ENDPOINT_URL": proxy.url}, "sync.neon-to-rds", "--yes", "--break-lock")
        assert result.returncode == 1, result.stdout + result.stderr
        errors = errors_of(result)
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert errors[0].startswith("[ERROR] another sync is running: sync neon-to-rds on other-laptop (pid 4242)")
        assert json.loads(s3.get_object(Bucket=bucket, Key=LOCK_KEY)["Body"].read()) == newer
        assert dbtools.snapshot(rds) == before
    finally:
        s3.delete_object(Bucket=bucket, Key=LOCK_KEY)


# --------------------------------------------------------------------------------------------------
# Manifests that cannot be read


def test_a_corrupt_manifest_is_named_and_skipped_and_its_dump_is_not_restored(sandbox, sandbox_env,
                                                                              sandbox_settings, prepared, neon, rds):
    s3, bucket = sandbox.client("s3"), sandbox_settings.bucket_name
    first = json.loads(inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json").stdout)
    assert first["status"] == "ok"
    good = key_of(first["dump"]["url"])
    # Two newer records, both broken: a truncated manifest and one that is not JSON at all.
    body = s3.get_object(Bucket=bucket, Key=good.replace(".dump", ".manifest.json"))["Body"].read()
    truncated, garbage = "rds-dumps/2099-01-01T00-00-00", "rds-dumps/2099-01-01T00-00-01"
    for name, content in ((truncated, body[: len(body) // 2]), (garbage, b"\x00\xffnot json")):
        s3.put_object(Bucket=bucket, Key=name + ".dump", Body=b"PGDMP")
        s3.put_object(Bucket=bucket, Key=name + ".manifest.json", Body=content)
    urls = [f"s3://{bucket}/{name}.manifest.json" for name in (truncated, garbage)]

    listed = inv(sandbox_env, "sync.list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert all(f"[WARN] skipping the manifest {url}" in listed.stderr for url in urls), listed.stderr
    dumps = {d["key"]: d for d in json.loads(listed.stdout)["dumps"]}
    assert dumps[good]["tables"]["app.customers"] == 300 and dumps[truncated + ".dump"]["reason"] == "?"

    # The guard goes on with the newest readable record: RDS is unchanged since the first sync.
    synced = inv(sandbox_env, "sync.neon-to-rds", "--yes", "--json")
    assert synced.returncode == 0, synced.stderr
    assert all(f"[WARN] skipping the manifest {url}" in synced.stderr for url in urls)
    assert json.loads(synced.stdout)["divergence"]["verdict"] == "unchanged"

    # A restore of another dump goes on too; a restore of the broken one refuses in one line.
    restored = inv(sandbox_env, "sync.restore", "--key", good, "--to", "neon", "--yes", "--dry-run")
    assert restored.returncode == 0 and f"[WARN] skipping the manifest {urls[0]}" in restored.stdout, restored.stdout
    before = (dbtools.snapshot(rds), s3_state(sandbox, bucket))
    refused = inv(sandbox_env, "sync.restore", "--key", truncated + ".dump", "--to", "rds", "--yes")
    assert refused.returncode == 1
    errors = errors_of(refused)
    assert len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert errors[0].startswith(f"[ERROR] the manifest {urls[0]} is unreadable (not valid JSON")
    assert "pick another dump with `inv sync.list`" in errors[0]
    assert (dbtools.snapshot(rds), s3_state(sandbox, bucket)) == before
