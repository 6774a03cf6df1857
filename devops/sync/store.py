"""The dumps bucket: keys, manifests, listing, and the lock that keeps two syncs apart.

Layout (as in the original bash scripts): ``neon-dumps/`` holds dumps of Neon, ``rds-dumps/`` dumps of RDS, each
``YYYY-MM-DDTHH-MM-SS.dump`` with a sidecar ``YYYY-MM-DDTHH-MM-SS.manifest.json`` (direction, reason,
masked source, versions, sha256, size, per-table rows and checksums, timings). A restore leaves
``YYYY-MM-DDTHH-MM-SS.restore.manifest.json`` in the target's folder: the dump it put back and what the
target held after it (no dump of its own). The bucket's lifecycle rule expires them all after 30 days.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from devops import hints
from devops.aws import S3ErrorKind, describe, s3_error_kind
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
# Manifests read at once by a listing (sync.list): each is a round trip, so they go side by side.
MANIFEST_READS = 8


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


def second_of(key: str) -> str:
    """The second an operation started, which names all its files: rds-dumps/2026-01-29T15-45-00.dump."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def newest_record(side: str, manifests: Iterable[tuple[str, dict[str, Any]]]) -> Known | None:
    """Of the manifests of one second (key, manifest), the newest record of ``side``: a dump's "fingerprint"
    or a "restored" one, whichever was recorded last; None when none of them mentions ``side``."""
    best: Known | None = None
    for key, manifest in manifests:
        dump = manifest.get("key") or key[: -len(MANIFEST_SUFFIX)] + DUMP_SUFFIX
        for record in (manifest.get("fingerprint"), manifest.get("restored")):
            if isinstance(record, dict) and record.get("side") == side and \
                    (best is None or str(record.get("recorded", "")) > str(best.record.get("recorded", ""))):
                best = Known(dump, record, manifest, key)
    return best


def committed_seconds(dumps: list[dict[str, Any]], restore_records: list[str]) -> set[str]:
    """The seconds of the operations that committed: a sync leaves its target's fingerprint ("restored") in
    its source dump's manifest once the target holds that dump, and a restore writes its record only then.
    A sync or restore that did not commit leaves neither, so its dumps (the safety copy; a sync's source
    dump) are at a second not in this set."""
    return ({second_of(d["key"]) for d in dumps if d.get("manifest", {}).get("restored")}
            | {second_of(key) for key in restore_records})


class Known(NamedTuple):
    """The newest recorded state of one side: the dump holding exactly that data, the fingerprint, the
    manifest that recorded it (its key, reason, size and sha256 are the dump's), and where it was found."""

    key: str
    record: dict[str, Any]
    manifest: dict[str, Any]
    found_in: str


class UnreadableManifest(DevopsError):
    """A manifest that cannot be read or parsed: its dump cannot be checked, restored or compared with."""

    def __init__(self, url: str, why: str):
        super().__init__(f"the manifest {url} is unreadable ({why}): its dump cannot be checked against it, so it "
                         f"is not restored; pick another dump with `{hints.inv('sync.list')}`")
        self.url, self.why = url, why


class DumpStore:
    def __init__(self, s3: Any, bucket: str, warn: Callable[[str], None] | None = None):
        self.s3 = s3
        self.bucket = bucket
        # Where a listing reports what it skipped (an unreadable manifest); the flow passes console.warn.
        self.warn = warn or (lambda message: None)

    def _skip(self, exc: UnreadableManifest) -> None:
        self.warn(f"skipping the manifest {exc.url}: {exc.why}; going on with the readable ones")

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def check_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if s3_error_kind(exc) is S3ErrorKind.MISSING_BUCKET:
                raise DevopsError(f"bucket {self.bucket} not found: apply the Terraform environment "
                                  "(terraform/environments/dev) first") from None
            raise DevopsError(f"bucket {self.bucket} is not usable: {describe(exc)}") from None
        except BotoCoreError as exc:
            raise DevopsError(f"S3 unreachable: {describe(exc)}") from None

    def objects(self, sides: Iterable[str] = SIDES, from_second: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The objects in the sides' folders (S3's listing entries: Key, Size, LastModified), the sides' LISTs
        side by side; with ``from_second``, only the keys of that second and later."""
        def listed(side: str) -> list[dict[str, Any]]:
            prefix = dump_prefix(side)
            start = {"StartAfter": prefix + from_second.strftime(TIMESTAMP)} if from_second else {}
            try:
                return [item for page in self.s3.get_paginator("list_objects_v2").paginate(
                        Bucket=self.bucket, Prefix=prefix, **start) for item in page.get("Contents", [])]
            except (ClientError, BotoCoreError) as exc:
                raise DevopsError(f"cannot list {self.url(prefix)}: {describe(exc)}") from None

        sides = tuple(sides)
        with ThreadPoolExecutor(max_workers=len(sides)) as pool:
            return [item for items in pool.map(listed, sides) for item in items]

    def free_time(self, sides: tuple[str, ...], when: dt.datetime) -> dt.datetime:
        """The first second from ``when`` at which no dump key of ``sides`` exists yet.

        Keys have one-second resolution (as in the original bash scripts): two operations within a second must not
        overwrite each other's dumps.
        """
        when = when.replace(microsecond=0)
        taken = {second_of(item["Key"]) for item in self.objects(sides, from_second=when)}
        while when.strftime(TIMESTAMP) in taken:
            when += dt.timedelta(seconds=1)
        return when

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if s3_error_kind(exc) is S3ErrorKind.MISSING_KEY:
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
            if s3_error_kind(exc) is S3ErrorKind.MISSING_KEY:
                raise DevopsError(f"no manifest for {self.url(key)}: list the dumps with "
                                  f"`{hints.inv('sync.list')}`") from None
            raise UnreadableManifest(self.url(name), describe(exc)) from None
        except BotoCoreError as exc:
            raise DevopsError(f"S3 unreachable: {describe(exc)}") from None
        try:
            manifest = json.loads(body)
        except ValueError as exc:  # truncated, not JSON, not UTF-8
            raise UnreadableManifest(self.url(name), f"not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise UnreadableManifest(self.url(name), "not a JSON object")
        return manifest

    def dumps(self) -> list[dict[str, Any]]:
        """Every dump in the bucket with its manifest, newest first, and whether the operation that made it (a
        sync: its source dump and its safety copy; a restore: its safety copy) committed. The manifests are
        read side by side (a round trip for several)."""
        objects = {item["Key"]: item for item in self.objects()}
        restores = [key for key in objects if key.endswith(RESTORE_SUFFIX)]
        dumps = [key for key in objects if key.endswith(DUMP_SUFFIX)]

        def manifest_of(key: str) -> dict[str, Any]:
            try:
                return self.manifest(key) if manifest_key(key) in objects else {}
            except UnreadableManifest as exc:
                self._skip(exc)
                return {}

        with ThreadPoolExecutor(max_workers=MANIFEST_READS) as pool:
            manifests = list(pool.map(manifest_of, dumps))
        found = [{"key": key, "size": objects[key]["Size"], "modified": objects[key]["LastModified"],
                  "manifest": manifest} for key, manifest in zip(dumps, manifests)]
        done = committed_seconds(found, restores)
        for entry in found:
            entry["committed"] = second_of(entry["key"]) in done
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
        by_second: dict[str, list[str]] = {}
        for item in self.objects():
            if item["Key"].endswith(MANIFEST_SUFFIX):
                by_second.setdefault(second_of(item["Key"]), []).append(item["Key"])
        for second in sorted(by_second, reverse=True):
            best = newest_record(side, self._readable(by_second[second]))
            if best is not None:
                return best
        return None

    def _readable(self, keys: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, manifest) of each readable manifest; an unreadable one is named in a [WARN] and skipped."""
        for key in keys:
            try:
                yield key, self.manifest(key)
            except UnreadableManifest as exc:
                self._skip(exc)

    def lock(self, purpose: str, break_lock: bool = False) -> "SyncLock":
        return SyncLock(self, purpose, break_lock)


class SyncLock:
    """An object created only if absent (S3 conditional write): two syncs cannot both hold it.

    A lock is stale when it is older than STALE_AFTER, or was taken on this host by a process that is
    gone. A stale lock is never removed silently: ``break_lock`` (--break-lock) removes the lock it read,
    after saying whose it was. Every removal is conditional on the ETag of the lock object that was read
    or written (If-Match), so a sync only ever removes the lock it saw: never one another sync took since.
    """

    def __init__(self, store: DumpStore, purpose: str, break_lock: bool):
        self.store = store
        self.break_lock = break_lock
        # The token makes each lock object's ETag unique, even for two holders started in the same second.
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "purpose": purpose,
                       "started": utcnow().isoformat(), "token": secrets.token_hex(8)}
        self.broken: dict[str, Any] | None = None
        self.held = False
        self.etag = ""

    def __enter__(self) -> "SyncLock":
        s3, bucket = self.store.s3, self.store.bucket
        try:
            if self.break_lock:
                found = self._current()
                if found is not None:
                    self.broken = found[0]
                    self._delete(found[1], missing_ok=True)
            written = s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=json.dumps(self.holder).encode(),
                                    IfNoneMatch="*")
        except ClientError as exc:
            if s3_error_kind(exc) is not S3ErrorKind.PRECONDITION_FAILED:
                raise DevopsError(f"cannot take the sync lock: {describe(exc)}") from None
            raise DevopsError(self._held_message((self._current() or ({}, ""))[0])) from None
        except BotoCoreError as exc:
            raise DevopsError(f"S3 unreachable: {describe(exc)}") from None
        self.etag = written["ETag"]
        self.held = True
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()

    def release(self) -> None:
        """Remove the lock this sync wrote, and only that one (If-Match on its ETag)."""
        if not self.held:
            return
        try:
            self._delete(self.etag)
        except (ClientError, BotoCoreError):
            pass  # gone or replaced (--break-lock), or S3 is gone: the lock stays and is reported as held, then stale
        self.held = False

    def _delete(self, etag: str, missing_ok: bool = False) -> None:
        """Delete the lock object only while its ETag is ``etag`` (another one: PreconditionFailed)."""
        try:
            self.store.s3.delete_object(Bucket=self.store.bucket, Key=LOCK_KEY, IfMatch=etag)
        except ClientError as exc:
            if not (missing_ok and s3_error_kind(exc) is S3ErrorKind.MISSING_KEY):
                raise

    def _current(self) -> tuple[dict[str, Any], str] | None:
        """The lock object's holder and ETag, or None when there is no lock."""
        try:
            found = self.store.s3.get_object(Bucket=self.store.bucket, Key=LOCK_KEY)
        except ClientError as exc:
            if s3_error_kind(exc) is S3ErrorKind.MISSING_KEY:
                return None
            raise
        try:
            holder = json.loads(found["Body"].read())
        except ValueError:
            holder = {}  # unreadable: shown as an unknown holder, and stale
        return (holder if isinstance(holder, dict) else {}), found["ETag"]

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
