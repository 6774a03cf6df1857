"""The sync's decisions as pure logic (no server, no bucket): the divergence guard's verdict from fingerprints, and
which dumps belong to an operation that committed."""

from __future__ import annotations

from devops.sync.guard import DIVERGED, FIRST_SYNC, FORCED, UNCHANGED, Guard, changes, same_database
from devops.sync.store import Known, committed_seconds, newest_record

SERVER = {"system_identifier": "7301", "database": "app"}


def fingerprint(tables: dict, sequences: dict | None = None, schema: str = "s1", server: dict | None = None,
                pg_dump: str = "17.6", where: str = "rds.example:5432/app") -> dict:
    return {"tables": tables, "sequences": sequences or {}, "schema": schema, "server": server or SERVER,
            "pg_dump": pg_dump, "where": where}


RECORDED = fingerprint({"public.users": {"rows": 3, "checksum": "a"}, "public.orders": {"rows": 5, "checksum": "b"}},
                       {"public.users_id_seq": 3})


def known(record: dict = RECORDED) -> Known:
    return Known("rds-dumps/2026-01-01T00-00-00.dump", {**record, "recorded": "2026-01-01T00:00:00Z"},
                 {"reason": "safety-copy"}, "rds-dumps/2026-01-01T00-00-00.manifest.json")


GUARD = Guard("RDS", force=False, rerun="inv sync.neon-to-rds --force", other_way="inv sync.rds-to-neon")


def test_nothing_recorded_is_a_first_sync():
    verdict = GUARD.judge(None, RECORDED)
    assert verdict.verdict == FIRST_SYNC and verdict.known is None and "first sync" in verdict.note


def test_a_record_of_another_database_is_a_first_sync_with_a_note():
    other = fingerprint(RECORDED["tables"], server={"system_identifier": "9999", "database": "app"})
    verdict = GUARD.judge(known(), other)
    assert verdict.verdict == FIRST_SYNC and "different database" in verdict.note


def test_the_same_data_is_unchanged_and_a_moved_sequence_is_only_said():
    assert GUARD.judge(known(), RECORDED).verdict == UNCHANGED
    moved = GUARD.judge(known(), {**RECORDED, "sequences": {"public.users_id_seq": 7}})
    assert moved.verdict == UNCHANGED and "public.users_id_seq" in moved.note


def test_a_write_since_the_record_diverges_and_force_overrides():
    written = fingerprint({"public.users": {"rows": 4, "checksum": "c"}, "public.orders": {"rows": 5, "checksum": "b"}})
    verdict = GUARD.judge(known(), written)
    assert verdict.verdict == DIVERGED
    assert verdict.changes == [{"table": "public.users", "kind": "changed", "recorded_rows": 3, "rows": 4,
                                "rows_added": 1, "rows_removed": 0, "content_changed": True}]
    assert verdict.report()["changed_tables"] == ["public.users"]
    forced = Guard("RDS", force=True, rerun="", other_way=None).judge(known(), written)
    assert forced.verdict == FORCED and forced.changes == verdict.changes


def test_changes_name_new_dropped_and_rewritten_tables_and_the_schema():
    now = fingerprint({"public.users": {"rows": 3, "checksum": "z"}, "public.audit": {"rows": 1, "checksum": "q"}},
                      schema="s2")
    found = {c["table"]: c for c in changes(RECORDED, now)}
    assert found["public.audit"]["kind"] == "new table" and found["public.audit"]["rows_added"] == 1
    assert found["public.orders"]["kind"] == "table dropped" and found["public.orders"]["rows_removed"] == 5
    assert found["public.users"]["content_changed"] and found["public.users"]["rows_added"] == 0
    assert found["(schema)"]["kind"] == "definitions changed"


def test_a_schema_hash_by_another_pg_dump_is_not_compared():
    assert changes(RECORDED, {**RECORDED, "schema": "s2", "pg_dump": "18.1"}) == []


def test_the_same_database_by_system_identifier_else_by_where():
    assert same_database(RECORDED, {**RECORDED, "where": "127.0.0.1:6543/app"})  # a tunnel: another name, one server
    assert not same_database(RECORDED, {**RECORDED, "server": {"system_identifier": "7301", "database": "other"}})
    assert same_database({"where": "h:1/db"}, {"where": "h:1/db"}) and not same_database({"where": "h:1/db"},
                                                                                        {"where": "h:2/db"})


def test_a_sync_or_restore_that_did_not_commit_is_told_by_its_second():
    """10:00 a sync that committed (its source dump records what RDS got), 11:00 one that did not; 12:00 a
    restore that wrote its record, 13:00 one that did not."""
    dumps = [{"key": "neon-dumps/2026-01-01T10-00-00.dump", "manifest": {"reason": "sync", "restored": {"tables": {}}}},
             {"key": "rds-dumps/2026-01-01T10-00-00.dump", "manifest": {"reason": "safety copy of RDS"}},
             {"key": "neon-dumps/2026-01-01T11-00-00.dump", "manifest": {"reason": "sync"}},
             {"key": "rds-dumps/2026-01-01T11-00-00.dump", "manifest": {"reason": "safety copy of RDS"}},
             {"key": "rds-dumps/2026-01-01T12-00-00.dump", "manifest": {"reason": "safety copy before restoring"}},
             {"key": "rds-dumps/2026-01-01T13-00-00.dump", "manifest": {"reason": "safety copy before restoring"}}]
    assert committed_seconds(dumps, ["rds-dumps/2026-01-01T12-00-00.restore.manifest.json"]) == {
        "2026-01-01T10-00-00", "2026-01-01T12-00-00"}


def test_the_newest_record_of_a_side_among_one_seconds_manifests():
    """A sync's source manifest holds the source as dumped and, once committed, the target as restored; its
    safety copy holds the target as it was. The newest mention of a side wins."""
    source = ("neon-dumps/2026-01-01T10-00-00.manifest.json",
              {"fingerprint": {"side": "neon", "recorded": "2026-01-01T10:00:05"},
               "restored": {"side": "rds", "recorded": "2026-01-01T10:00:30"}})
    safety = ("rds-dumps/2026-01-01T10-00-00.manifest.json",
              {"fingerprint": {"side": "rds", "recorded": "2026-01-01T10:00:01"}})
    rds = newest_record("rds", [safety, source])
    assert rds is not None and rds.record["recorded"] == "2026-01-01T10:00:30"
    assert rds.key == "neon-dumps/2026-01-01T10-00-00.dump"  # RDS holds what that dump holds
    neon = newest_record("neon", [safety, source])
    assert neon is not None and neon.found_in == source[0]
    assert newest_record("neon", [safety]) is None
