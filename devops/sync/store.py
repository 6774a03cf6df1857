"""The dumps bucket: keys, manifests, listing, and the lock that keeps two syncs apart.

Layout (as in the seeds): ``neon-dumps/`` holds dumps of Neon, ``rds-dumps/`` dumps of RDS, each
``YYYY-MM-DDTHH-MM-SS.dump`` with a sidecar ``YYYY-MM-DDTHH-MM-SS.manifest.json`` (direction, reason,
masked source, versions, sha256, size, per-table rows and checksums, timings). A restore leaves
``YYYY-MM-DDTHH-MM-SS.restore.manifest.json`` in the target's folder: the dump it put back and what the
target held after it (no dump of its own). The bucket's lifecycle rule expires them all after 30 days.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from typing import Any, Iterator, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from devops.aws import describe
from devops.errors import DevopsError
from devops.s3stream import MultipartWriter, read_object

SIDES = ("neon", "rds")
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"
RESTORE_SUFFIX = ".restore" + MANIFEST_SUFFIX
LOCK_KEY = "locks/sync.lock"
# A lock older than this is stale whoever holds it: no sync of a dev database runs for half a day.
STALE_AFTER = dt.timedelta(hours=12)
TIMESTAMP = "%Y-%m-%dT%H-%M-%S"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def utcnow_precise() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def dump_prefix(side: str) -> str:
    return f"{side}-dumps/"


def dump_key(side: str, when: dt.datetime) -> str:
    return f"{dump_prefix(side)}{when.strftime(TIMESTAMP)}{DUMP_SUFFIX}"


def manifest_key(key: str) -> str:
    return key[: -len(DUMP_SUFFIX)] + MANIFEST_SUFFIX if key.endswith(DUMP_SUFFIX) else key + MANIFEST_SUFFIX


def restore_record_key(side: str, when: dt.datetime) -> str:
    return f"{dump_prefix(side)}{when.strftime(TIMESTAMP)}{RESTORE_SUFFIX}"


class Known(NamedTuple):
    """The newest recorded state of one side: the dump holding exactly that data, the fingerprint, the
    manifest that recorded it (its key, reason, size and sha256 are the dump's), and where it was found."""

    key: str
    record: dict[str, Any]
    manifest: dict[str, Any]
    found_in: str


class DumpStore:
    def __init__(self, s3: Any, bucket: str):
        self.s3 = s3
        self.bucket = bucket

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def check_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise DevopsError(f"bucket {self.bucket} not found: apply the Terraform environment "
                                  "(terraform/environments/dev) first") from None
            raise DevopsError(f"bucket {self.bucket} is not usable: {describe(exc)}") from None
        except BotoCoreError as exc:
            raise DevopsError(f"S3 unreachable: {describe(exc)}") from None

    def free_time(self, sides: tuple[str, ...], when: dt.datetime) -> dt.datetime:
        """The first second from ``when`` at which no dump key of ``sides`` exists yet.

        Keys have one-second resolution (as in the seeds): two operations within a second must not
        overwrite each other's dumps.
        """
        while any(self.exists(dump_key(side, when)) for side in sides):
            when += dt.timedelta(seconds=1)
        return when

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise DevopsError(f"cannot read {self.url(key)}: {describe(exc)}") from None

    def writer(self, key: str) -> MultipartWriter:
        return MultipartWriter(self.s3, self.bucket, key)

    def read(self, key: str) -> Iterator[bytes]:
        return read_object(self.s3, self.bucket, key)

    def put_manifest(self, key: str, manifest: dict[str, Any]) -> None:
        self._put_json(manifest_key(key), manifest, f"the manifest of {self.url(key)}")

    def put_restore_record(self, side: str, when: dt.datetime, record: dict[str, Any]) -> None:
        """What a restore put into ``side``: ``record["key"]`` is the dump, ``record["restored"]`` the fingerprint."""
        self._put_json(restore_record_key(side, when), record, "the restore's record")

    def _put_json(self, key: str, payload: dict[str, Any], what: str) -> None:
        body = json.dumps(payload, indent=2, sort_keys=True).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise DevopsError(f"cannot write {what}: {describe(exc)}") from None

    def manifest(self, key: str) -> dict[str, Any]:
        """The manifest of the dump ``key`` (or, given a manifest's own key, that manifest)."""
        name = key if key.endswith(MANIFEST_SUFFIX) else manifest_key(key)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise DevopsError(f"no manifest for {self.url(key)}: list the dumps with `inv sync.list`") from None
            raise DevopsError(f"cannot read the manifest of {self.url(key)}: {describe(exc)}") from None
        except BotoCoreError as exc:
            raise DevopsError(f"S3 unreachable: {describe(exc)}") from None
        return json.loads(body)

    def dumps(self) -> list[dict[str, Any]]:
        """Every dump in the bucket with its manifest, newest first."""
        found = []
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for side in SIDES:
                objects = {}
                for page in paginator.paginate(Bucket=self.bucket, Prefix=dump_prefix(side)):
                    for item in page.get("Contents", []):
                        objects[item["Key"]] = item
                for key, item in objects.items():
                    if key.endswith(DUMP_SUFFIX):
                        manifest = self.manifest(key) if manifest_key(key) in objects else {}
                        found.append({"key": key, "size": item["Size"], "modified": item["LastModified"],
                                      "manifest": manifest})
        except (ClientError, BotoCoreError) as exc:
            raise DevopsError(f"cannot list {self.url('')}: {describe(exc)}") from None
        return sorted(found, key=lambda entry: entry["modified"], reverse=True)

    def latest_fingerprint(self, side: str) -> Known | None:
        """The newest recorded state of one side, or None when nothing ever recorded it.

        Three records say what a side held: the "fingerprint" of a dump of it (as dumped: a sync's source,
        or a safety copy), the "restored" fingerprint a sync leaves in its source dump's manifest once the
        target holds that dump, and the "restored" of a restore record. Every operation runs under the sync
        lock and names its files after the second it started, so the newest started operation that
        mentions ``side`` holds its newest record: manifests are read by that second, newest first, one
        second at a time (a sync's source manifest and safety copy share it), until one mentions ``side``.
        """
        keys = []
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for prefix in map(dump_prefix, SIDES):
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                    keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(MANIFEST_SUFFIX)]
        except (ClientError, BotoCoreError) as exc:
            raise DevopsError(f"cannot list {self.url('')}: {describe(exc)}") from None
        by_second: dict[str, list[str]] = {}
        for key in keys:
            by_second.setdefault(key.rsplit("/", 1)[-1].split(".", 1)[0], []).append(key)
        for second in sorted(by_second, reverse=True):
            best: Known | None = None
            for key in by_second[second]:
                manifest = self.manifest(key)
                dump = manifest.get("key") or key[: -len(MANIFEST_SUFFIX)] + DUMP_SUFFIX
                for record in (manifest.get("fingerprint"), manifest.get("restored")):
                    if record and record.get("side") == side and (best is None or record["recorded"] > best.record["recorded"]):
                        best = Known(dump, record, manifest, key)
            if best is not None:
                return best
        return None

    def lock(self, purpose: str, break_lock: bool = False) -> "SyncLock":
        return SyncLock(self, purpose, break_lock)


class SyncLock:
    """An object created only if absent (S3 conditional write): two syncs cannot both hold it.

    A lock is stale when it is older than STALE_AFTER, or was taken on this host by a process that is
    gone. A stale lock is never removed silently: ``break_lock`` (--break-lock) removes whatever lock is
    there, after saying whose it was.
    """

    def __init__(self, store: DumpStore, purpose: str, break_lock: bool):
        self.store = store
        self.break_lock = break_lock
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "purpose": purpose,
                       "started": utcnow().isoformat()}
        self.broken: dict[str, Any] | None = None
        self.held = False

    def __enter__(self) -> "SyncLock":
        s3, bucket = self.store.s3, self.store.bucket
        if self.break_lock:
            self.broken = self._current()
            if self.broken is not None:
                s3.delete_object(Bucket=bucket, Key=LOCK_KEY)
        try:
            s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=json.dumps(self.holder).encode(), IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise DevopsError(f"cannot take the sync lock: {describe(exc)}") from None
            raise DevopsError(self._held_message(self._current() or {})) from None
        except BotoCoreError as exc:
            raise DevopsError(f"S3 unreachable: {describe(exc)}") from None
        self.held = True
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()

    def release(self) -> None:
        if not self.held:
            return
        try:
            if self._current() == self.holder:
                self.store.s3.delete_object(Bucket=self.store.bucket, Key=LOCK_KEY)
        except (ClientError, BotoCoreError):
            pass  # S3 is gone: the lock stays and will be reported as held, then as stale
        self.held = False

    def _current(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.s3.get_object(Bucket=self.store.bucket, Key=LOCK_KEY)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def _held_message(self, holder: dict[str, Any]) -> str:
        who = f"{holder.get('purpose', '?')} on {holder.get('host', '?')} (pid {holder.get('pid', '?')}), " \
              f"started {holder.get('started', '?')}"
        if is_stale(holder):
            return f"a stale sync lock is in the way: {who}; that sync is gone. Remove it with --break-lock"
        return f"another sync is running: {who}. Wait for it, or if it is dead, remove its lock with --break-lock"


def is_stale(holder: dict[str, Any], now: dt.datetime | None = None) -> bool:
    try:
        started = dt.datetime.fromisoformat(holder["started"])
    except (KeyError, ValueError):
        return True
    if (now or utcnow()) - started > STALE_AFTER:
        return True
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False
