"""The sync's decisions as pure logic (no server, no bucket): the divergence guard's verdict from fingerprints, the
plan's outcome, the safety copy's choice, the verification's comparison, the version checks, the report's JSON,
and which dumps belong to an operation that committed."""

from __future__ import annotations

import json
import re

from devops.postgres import TableStats
from devops.sync.decisions import (LockTable, Needs, Offers, Outcome, after_plan, compare, compare_sequences,
                                   content_hash, downgrade, downgrade_hint, locks_needed, must_look_again,
                                   reusable_dump, too_many_locks, unexpected_target, version_num, what_target_lacks)
from devops.sync.decisions import RdsStorage, amount, rds_room
from devops.sync.guard import changes, judge, same_database
from devops.sync.report import (Change, Copy, PlanRow, Report, Side, Status, TableResult, TargetState, Verdict,
                                Versions)
from devops.sync.store import Known, committed_seconds, newest_record

SERVER = {"system_identifier": "7301", "database": "app"}


def fingerprint(tables: dict, sequences: dict | None = None, schema: str = "s1", server: dict | None = None,
                schema_by: str = "catalog-1 17", where: str = "rds.example:5432/app") -> dict:
    return {"tables": tables, "sequences": sequences or {}, "schema": schema, "server": server or SERVER,
            "schema_by": schema_by, "where": where}


RECORDED = fingerprint({"public.users": {"rows": 3, "checksum": "a"}, "public.orders": {"rows": 5, "checksum": "b"}},
                       {"public.users_id_seq": 3})


def known(record: dict = RECORDED) -> Known:
    return Known("rds-dumps/2026-01-01T00-00-00.dump", {**record, "recorded": "2026-01-01T00:00:00Z"},
                 {"reason": "safety-copy"}, "rds-dumps/2026-01-01T00-00-00.manifest.json")




def guard(known_record, current, force=False):
    return judge(known_record, current, "RDS", force)


def test_nothing_recorded_is_a_first_sync():
    verdict = guard(None, RECORDED)
    assert verdict.verdict == Verdict.FIRST_SYNC and verdict.known is None and "first sync" in verdict.note


def test_a_record_of_another_database_is_a_first_sync_with_a_note():
    other = fingerprint(RECORDED["tables"], server={"system_identifier": "9999", "database": "app"})
    verdict = guard(known(), other)
    assert verdict.verdict == Verdict.FIRST_SYNC and "different database" in verdict.note


def test_the_same_data_is_unchanged_and_a_moved_sequence_is_only_said():
    assert guard(known(), RECORDED).verdict == Verdict.UNCHANGED
    moved = guard(known(), {**RECORDED, "sequences": {"public.users_id_seq": 7}})
    assert moved.verdict == Verdict.UNCHANGED and "public.users_id_seq" in moved.note


def test_a_write_since_the_record_diverges_and_force_overrides():
    written = fingerprint({"public.users": {"rows": 4, "checksum": "c"}, "public.orders": {"rows": 5, "checksum": "b"}})
    verdict = guard(known(), written)
    assert verdict.verdict == Verdict.DIVERGED
    assert verdict.changes == [Change("public.users", "changed", 3, 4, rows_added=1, rows_removed=0,
                                      content_changed=True)]
    assert verdict.divergence().changed_tables == ["public.users"]
    forced = guard(known(), written, force=True)
    assert forced.verdict == Verdict.FORCED and forced.changes == verdict.changes


def test_changes_name_new_dropped_and_rewritten_tables_and_the_schema():
    now = fingerprint({"public.users": {"rows": 3, "checksum": "z"}, "public.audit": {"rows": 1, "checksum": "q"}},
                      schema="s2")
    found = {c.table: c for c in changes(RECORDED, now)}
    assert found["public.audit"].kind == "new table" and found["public.audit"].rows_added == 1
    assert found["public.orders"].kind == "table dropped" and found["public.orders"].rows_removed == 5
    assert found["public.users"].content_changed and found["public.users"].rows_added == 0
    assert found["(schema)"].kind == "definitions changed"


def test_a_schema_hash_taken_another_way_is_not_compared():
    """Another server major's catalogs, or an older record's pg_dump --schema-only: a different hash of the
    same schema."""
    assert changes(RECORDED, {**RECORDED, "schema": "s2", "schema_by": "catalog-1 18"}) == []
    older = {key: value for key, value in RECORDED.items() if key != "schema_by"}
    assert changes({**older, "pg_dump": "17.6"}, {**RECORDED, "schema": "s2"}) == []


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


# ---- the plan's outcome, the safety copy, the verification, the versions ------------------------------------


def test_after_the_plan_a_dry_run_stops_and_a_diverged_target_is_refused():
    assert after_plan(Verdict.DIVERGED, dry_run=True) == Outcome.DRY_RUN
    assert after_plan(Verdict.DIVERGED, dry_run=False) == Outcome.REFUSE
    assert all(after_plan(v, dry_run=False) == Outcome.PROCEED
               for v in (Verdict.FIRST_SYNC, Verdict.UNCHANGED, Verdict.FORCED))


def test_a_restore_that_would_not_fit_in_the_lock_table_is_refused_after_the_guard():
    assert after_plan(Verdict.UNCHANGED, dry_run=False, fits=False) == Outcome.UNFIT
    assert after_plan(Verdict.DIVERGED, dry_run=False, fits=False) == Outcome.REFUSE  # the guard says first
    assert after_plan(Verdict.UNCHANGED, dry_run=True, fits=False) == Outcome.DRY_RUN


def test_the_locks_a_restore_needs_and_the_refusal_names_both_numbers_and_the_fix_of_that_side():
    # Measured on a generated schema of 300 tables (5,881 objects a side, PostgreSQL 17): 12,461 locks held.
    assert 12_461 <= locks_needed(5_881, 5_881) <= 12_461 * 1.05
    assert too_many_locks(8_000, LockTable(64, 126), "Neon") is None  # 8,064 locks: fits
    neon = too_many_locks(12_567, LockTable(64, 126), "Neon")
    assert neon.startswith("refused: ") and "12,567 locks" in neon and "8,064" in neon and "nothing was changed" in neon
    assert "at least 197 slots" in neon and "1 CU" in neon
    rds = too_many_locks(12_567, LockTable(64, 109), "RDS")
    assert "max_locks_per_transaction to at least 116" in rds and "db_max_locks_per_transaction" in rds
    assert too_many_locks(10, LockTable(0, 0), "RDS") is None  # not read (an older record): not judged


def test_the_newest_dump_is_the_safety_copy_only_when_it_holds_what_the_target_holds():
    same = guard(known(), RECORDED)
    assert reusable_dump(same, RECORDED) is same.known
    moved = {**RECORDED, "sequences": {"public.users_id_seq": 7}}
    assert reusable_dump(guard(known(), moved), moved) is None  # a sequence moved: dumped again
    assert reusable_dump(guard(None, RECORDED), RECORDED) is None


def test_the_target_is_looked_at_again_only_after_a_question_and_where_the_plan_decided_something():
    same = guard(known(), RECORDED)
    assert must_look_again(same, RECORDED, asked=True) and not must_look_again(same, RECORDED, asked=False)
    assert not must_look_again(guard(None, RECORDED), RECORDED, asked=True)  # first sync: nothing depends on it
    written = fingerprint({"public.users": {"rows": 4, "checksum": "c"}})
    assert not must_look_again(guard(known(), written, force=True), written, asked=True)


def test_expect_target_refuses_a_target_that_changed_since_the_plan():
    assert unexpected_target("", RECORDED, "RDS") is None
    assert unexpected_target(content_hash(RECORDED), RECORDED, "RDS") is None
    error = unexpected_target("0123456789abcdef", RECORDED, "RDS")
    assert str(error).startswith("refused: RDS changed after the confirmed plan") and "nothing was changed" in str(error)


def test_the_verification_compares_rows_and_checksums_of_every_table_on_either_side():
    expected = {"public.a": {"rows": 2, "checksum": "x"}, "public.b": {"rows": 1, "checksum": "y"}}
    found = {"public.a": TableStats("public", "a", 2, "x"), "public.c": TableStats("public", "c", 5, "z")}
    assert compare(expected, found) == [TableResult("public.a", 2, 2, True), TableResult("public.b", 1, None, False),
                                        TableResult("public.c", None, 5, False)]
    assert compare_sequences({"s": 3, "t": 1}, {"s": 3, "t": 2, "u": 4}) == ["t", "u"]


def test_a_downgrade_is_a_newer_major_into_an_older_one_with_the_fix_for_that_side():
    assert downgrade(170002, 150013) == (17, 15) and downgrade(150013, 170002) is None
    assert downgrade(None, 150013) is None and downgrade(170002, 170005) is None
    assert version_num("17.2") == 170002 and version_num("?") is None
    assert 'db_engine_version = "17"' in downgrade_hint((17, 15), "RDS")
    assert "Neon project on PostgreSQL 17" in downgrade_hint((17, 15), "Neon") and downgrade_hint(None, "RDS") == ""


# ---- the report as JSON --------------------------------------------------------------------------------------


def test_a_report_reads_back_from_its_json_and_a_planned_dump_is_its_url():
    report = Report(
        operation="sync", dry_run=True, target="sandbox",
        sides={"target": Side("RDS", "postgresql://****@h:5432/app", "h:5432/app", "15.13")},
        plan={"public.a": PlanRow(2, None)}, target_state=TargetState(0, 0, "abc"),
        divergence=guard(known(), fingerprint({"public.users": {"rows": 4, "checksum": "c"}})).divergence(),
        versions=Versions("17.5", "15.13", True), safety_copy=Copy("s3://b/rds-dumps/x.dump"),
        direction="neon-to-rds", dump=Copy("s3://b/neon-dumps/x.dump", 10, "ff"), status=Status.DRY_RUN)
    data = json.loads(json.dumps(report.to_json()))
    assert data["safety_copy"] == "s3://b/rds-dumps/x.dump" and data["dump"]["size"] == 10
    assert data["status"] == "dry-run" and data["divergence"]["verdict"] == "diverged" and "key" not in data
    assert Report.from_json(data) == report


def test_a_record_tells_earlier_versions_of_the_tasks_not_to_compare_its_schema_hash():
    """Earlier versions hashed pg_dump --schema-only and compare a record's hash only when its "pg_dump" is
    their pg_dump's version: a catalog hash's record never names a version, so a teammate's older checkout
    does not refuse a sync over it as diverged."""
    from devops.postgres import make_endpoint
    from devops.sync.database import Database
    from devops.sync.dumps import fingerprint

    db = Database("rds", make_endpoint("RDS", "h", 5432, "u", "pw", "app", ca_file="/ca.pem"))
    db.version = 180001
    record = fingerprint(db, {}, {}, "0123")
    assert record["schema_by"] == "catalog-1 18"
    assert not re.fullmatch(r"\d+(\.\d+)*", record["pg_dump"])


def test_rds_allowed_extensions_limits_only_when_it_names_some():
    assert Offers.of(["pgcrypto"], None, []).allowed is None  # not RDS
    assert Offers.of(["pgcrypto"], "*", []).allowed is None and Offers.of(["pgcrypto"], "", []).allowed is None
    offers = Offers.of(["pgcrypto", "postgis", "hstore"], "pgcrypto, hstore", ["app"])
    assert offers.allowed == {"pgcrypto", "hstore"}
    refusal = what_target_lacks(Needs("Neon", ("hstore", "postgis", "vector")), offers, "RDS")
    assert refusal == ("refused: RDS lacks what the restore needs; nothing was changed. (1) RDS cannot create the "
                       "extension(s) vector that Neon has: drop them on Neon if the app does not use them (DROP "
                       "EXTENSION vector), or sync to a target that has them; (2) RDS's rds.allowed_extensions leaves "
                       "out postgis: add them in its parameter group")
    assert what_target_lacks(Needs("Neon", ("hstore",), {"app": ["public.t p"]}), offers, "RDS") is None


def test_a_neon_project_too_small_for_old_and_new_data_together_is_refused():
    """The replace keeps the target's data and the source's until COMMIT: both must fit Neon's limit."""
    mb = 1024 * 1024
    offers = Offers.of([], None, [], 512 * mb, 300 * mb)
    assert offers.size_limit == 512 * mb
    assert what_target_lacks(Needs("RDS", bytes=200 * mb), offers, "Neon") is None
    refusal = what_target_lacks(Needs("RDS", bytes=300 * mb), offers, "Neon")
    assert refusal.endswith("(1) Neon's project is limited to 512 MB (neon.max_cluster_size, its plan's), and the "
                            "replace keeps what Neon holds (300 MB) beside RDS's data (300 MB) until it commits: "
                            "about 600 MB; raise the project's limit (a bigger plan), or make room on Neon first")
    for unlimited in (None, 0, -1):  # RDS has no such setting; Neon's 0 or -1: none
        assert Offers.of([], None, [], unlimited, 300 * mb).size_limit is None


MB, GIB = 1024 * 1024, 1024 ** 3


def rds_plan(report_storage, label="RDS") -> str:
    """The plan's Storage field as render shows it."""
    from devops.sync import render

    report = Report("sync", False, "sandbox", {"target": Side(label, "u", "w", "15")}, {}, TargetState(0, 0, "f"),
                    None, Versions("18", "15", True), Copy("s3://b/k"), storage=report_storage)
    fields = render._storage(report)
    return fields[0][1] if fields else ""


def test_rds_without_room_for_old_and_new_data_and_their_wal_is_refused_with_its_numbers_and_fixes():
    """CloudWatch's FreeStorageSpace against the new data and its WAL (the old data is already counted as used)."""
    offers = Offers.of([], None, ["app"], None, 300 * MB)
    storage = RdsStorage("app-dev-db", 20, None, 500 * MB)
    room = rds_room(Needs("Neon", bytes=200 * MB), offers, storage)
    assert (room.needed, room.free, room.room, room.max_allocated_gib) == (400 * MB, 500 * MB, 500 * MB, None)
    assert room.measured == "CloudWatch's FreeStorageSpace"
    assert what_target_lacks(Needs("Neon", bytes=200 * MB), offers, "RDS", room) is None
    assert "about 400 MB needed until COMMIT" in rds_plan(room) and "500 MB free on RDS (CloudWatch's" in rds_plan(room)
    needs = Needs("Neon", bytes=300 * MB)
    refusal = what_target_lacks(needs, offers, "RDS", rds_room(needs, offers, storage))
    assert refusal == ("refused: RDS lacks what the restore needs; nothing was changed. (1) RDS has 500 MB free "
                       "(CloudWatch's FreeStorageSpace; 20 GiB allocated, no storage autoscaling), and the replace "
                       "keeps what RDS holds beside Neon's data (300 MB) and its WAL until it commits: about 600 MB "
                       "more (an estimate); raise db_allocated_storage, or turn on storage autoscaling with "
                       "db_max_allocated_storage, in terraform/environments/dev, or make room on RDS first")
    # The WAL counted is as much as the data, up to max_wal_size's 2 GB: 10 GiB of data needs 12 GiB.
    assert rds_room(Needs("Neon", bytes=10 * GIB), offers, storage).needed == 12 * GIB


def test_rds_storage_with_the_other_problems_in_one_refusal():
    offers = Offers.of(["pgcrypto"], None, ["app"], None, 0)
    needs = Needs("Neon", ("vector",), {"authenticated": ["public.t p"]}, 2 * GIB)
    refusal = what_target_lacks(needs, offers, "RDS", rds_room(needs, offers, RdsStorage("db", 20, None, GIB)))
    assert "(1) RDS cannot create the extension(s) vector" in refusal
    assert "(2) RDS has no role authenticated" in refusal
    assert "(3) RDS has 1.0 GiB free (CloudWatch's FreeStorageSpace; 20 GiB allocated, no storage autoscaling)" in \
        refusal and "Neon's data (2.0 GiB) and its WAL until it commits: about 4.0 GiB more" in refusal


def test_without_a_datapoint_rds_counts_its_allocated_storage_less_its_databases():
    offers = Offers.of([], None, ["app"], None, 19 * GIB + 924 * MB)  # 100 MB of 20 GiB left
    why = "CloudWatch has no FreeStorageSpace of the last 15 minutes"
    room = rds_room(Needs("Neon", bytes=60 * MB), offers, RdsStorage("db", 20, None, None, why))
    assert (room.free, room.needed) == (100 * MB, 120 * MB)
    assert room.measured == f"allocated storage less its databases' sizes (WAL and logs not counted), since {why}"
    refusal = what_target_lacks(Needs("Neon", bytes=60 * MB), offers, "RDS", room)
    assert (f"RDS has 100 MB free (allocated storage less its databases' sizes (WAL and logs not counted), since "
            f"{why}; 20 GiB allocated, no storage autoscaling)") in refusal
    # Databases larger than the allocated storage (it was shrunk? a snapshot restored bigger): nothing free.
    assert rds_room(Needs("Neon", bytes=MB), Offers.of([], None, [], None, 30 * GIB), RdsStorage("db", 20)).free == 0


def test_storage_autoscaling_raises_the_ceiling_to_max_allocated_storage_and_the_plan_says_what_that_means():
    offers = Offers.of([], None, ["app"], None, 0)
    storage = RdsStorage("db", 20, 100, 1 * GIB)
    room = rds_room(Needs("Neon", bytes=5 * GIB), offers, storage)
    assert (room.room, room.max_allocated_gib) == (81 * GIB, 100)
    assert what_target_lacks(Needs("Neon", bytes=5 * GIB), offers, "RDS", room) is None
    line = rds_plan(room)
    assert "20 GiB allocated; storage autoscaling may grow it to 100 GiB: room for 81.0 GiB" in line
    assert "more than is free now: storage autoscaling grows the instance only once free space has stayed under 10% " \
           "for 5 minutes" in line
    needs = Needs("Neon", bytes=90 * GIB)
    refusal = what_target_lacks(needs, offers, "RDS", rds_room(needs, offers, storage))
    assert "RDS has 1.0 GiB free (CloudWatch's FreeStorageSpace; 20 GiB allocated, and storage autoscaling may grow " \
           "it to 100 GiB: room for 81.0 GiB), and the replace keeps" in refusal
    assert "Neon's data (90.0 GiB) and its WAL until it commits: about 92.0 GiB more (an estimate)" in refusal
    assert "raise db_max_allocated_storage (storage autoscaling's ceiling) or db_allocated_storage" in refusal
    # MaxAllocatedStorage no higher than the allocated storage: autoscaling is off.
    assert rds_room(needs, offers, RdsStorage("db", 20, 20, GIB)).max_allocated_gib is None


def test_rds_storage_not_known_is_not_checked_and_the_plan_says_so():
    offers = Offers.of([], None, [], None, 0)
    unknown = rds_room(Needs("Neon", bytes=GIB), offers, None)
    assert unknown.room is None and "description was not read here" in unknown.not_checked
    assert what_target_lacks(Needs("Neon", bytes=GIB), offers, "RDS", unknown) is None
    assert rds_plan(unknown).startswith("not checked: the RDS instance's description was not read here")
    older = rds_room(Needs("the dump"), offers, RdsStorage("db", 20, None, 0))  # a dump that records no size
    assert older.not_checked == "the dump records no size (a dump made before this check)"
    assert what_target_lacks(Needs("the dump"), offers, "RDS", older) is None
    assert rds_plan(None) == ""  # a target Neon: no storage field


def test_the_plan_report_carries_rds_storage_through_json():
    room = rds_room(Needs("Neon", bytes=MB), Offers.of([], None, [], None, 0), RdsStorage("db", 20, None, GIB))
    report = Report("sync", False, "sandbox", {"target": Side("RDS", "u", "w", "15")}, {}, TargetState(0, 0, "f"),
                    None, Versions("18", "15", True), Copy("s3://b/k"), storage=room)
    data = json.loads(json.dumps(report.to_json()))
    assert data["storage"] == {"needed": 2 * MB, "free": GIB, "room": GIB, "measured": "CloudWatch's FreeStorageSpace",
                               "allocated_gib": 20}
    assert Report.from_json(data).storage == room


def test_free_storage_is_the_newest_minutes_lowest_and_a_cloudwatch_that_cannot_tell_is_said_why():
    import datetime as dt

    from botocore.exceptions import ClientError

    from devops.sync.storage import free_storage

    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)

    class CloudWatch:
        def __init__(self, answer):
            self.answer, self.asked = answer, []

        def get_metric_statistics(self, **request):
            self.asked.append(request)
            if isinstance(self.answer, Exception):
                raise self.answer
            return {"Datapoints": self.answer}

    points = [{"Timestamp": now - dt.timedelta(minutes=3), "Minimum": 5.0 * GIB},
              {"Timestamp": now - dt.timedelta(minutes=1), "Minimum": 4.0 * GIB},
              {"Timestamp": now - dt.timedelta(minutes=2), "Minimum": 3.0 * GIB}]
    cloudwatch = CloudWatch(points)
    assert free_storage(cloudwatch, "app-dev-db", now) == (4 * GIB, "")
    (asked,) = cloudwatch.asked
    assert asked["StartTime"] == now - dt.timedelta(minutes=15) and asked["EndTime"] == now and asked["Period"] == 60
    assert free_storage(CloudWatch([]), "db", now) == (None,
                                                       "CloudWatch has no FreeStorageSpace of the last 15 minutes")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized to perform: "
                                    "cloudwatch:GetMetricStatistics"}}, "GetMetricStatistics")
    assert free_storage(CloudWatch(denied), "db", now) == (
        None, "CloudWatch's FreeStorageSpace could not be read (AccessDenied: not authorized to perform: "
              "cloudwatch:GetMetricStatistics)")


def test_amounts_read_in_mb_below_a_gib_and_in_gib_above():
    assert amount(0) == "0 MB" and amount(MB + 1) == "2 MB" and amount(MB + 1, up=False) == "1 MB"
    assert amount(GIB) == "1.0 GiB" and amount(int(19.96 * GIB), up=False) == "19.9 GiB" and amount(1500 * GIB) == \
        "1,500.0 GiB"
