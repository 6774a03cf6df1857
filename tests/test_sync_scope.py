"""devops/sync/scope.py: what a sync leaves alone, as settings, flags, SQL, pg_dump's and pg_restore's
arguments, the guard's comparison and the plan's refusal (pure logic; the sandbox's tests are in
tests/test_sync_left_alone.py)."""

from __future__ import annotations

import pytest

from devops.config import Settings
from devops.errors import DevopsError
from devops.sync.guard import changes, moved_sequences
from devops.sync.jobs import Options
from devops.sync.restore import restore_list
from devops.sync.scope import LeftAlone


def test_names_come_from_a_setting_a_list_or_a_flag_and_a_wrong_one_is_one_line():
    assert LeftAlone.of("neon_auth, audit", ["pg_session_jwt"]) == LeftAlone(("neon_auth", "audit"),
                                                                             ("pg_session_jwt",))
    assert Settings.load({"exclude_schemas": ["neon_auth"]}).exclude_schemas == ("neon_auth",)
    assert Options.of({"exclude_schema": "neon_auth,neon_auth"}).left_alone == LeftAlone(("neon_auth",))
    with pytest.raises(DevopsError, match=r"^--exclude-schema: 'neon auth' is not a schema name"):
        Options.of({"exclude_schema": "neon auth"})
    with pytest.raises(DevopsError, match=r"^devops.exclude_extensions: \"pg'x\" is not an? extension name"):
        Settings.load({"exclude_extensions": "pg'x"})


def test_the_sql_slots_and_the_tools_arguments():
    scope = LeftAlone(("neon_auth",), ("pg_session_jwt",))
    assert scope.fill("n.nspname <> ALL ({left_alone_schemas}) AND x = ANY ({left_alone_extensions})") == \
        "n.nspname <> ALL (ARRAY['neon_auth']::text[]) AND x = ANY (ARRAY['pg_session_jwt']::text[])"
    assert LeftAlone().fill("<> ALL ({left_alone_schemas})") == "<> ALL ('{}'::text[])"
    assert scope.pg_dump_args() == ['--exclude-schema="neon_auth"']  # quoted: that name exactly, not a pattern
    assert not LeftAlone() and scope and scope.describe() == "schema neon_auth, extension pg_session_jwt"
    assert LeftAlone.recorded(scope.as_record()) == scope and LeftAlone.recorded(None) == LeftAlone()


def test_the_restore_leaves_out_the_schemas_and_extensions_left_alone():
    listing = ("5; 2615 2200 SCHEMA - public pg_database_owner\n"
               "6; 2615 16390 SCHEMA - neon_auth owner\n"
               "7; 3079 16391 EXTENSION - pg_session_jwt \n"
               "8; 0 0 COMMENT - EXTENSION pg_session_jwt \n"
               "9; 3079 16392 EXTENSION - pgcrypto \n")
    lines, _ = restore_list(listing, {"public"}, LeftAlone(("neon_auth",), ("pg_session_jwt",)))
    assert [line.startswith(";") for line in lines] == [True, True, True, True, False]


def test_the_guard_compares_no_table_this_run_leaves_alone_and_every_one_it_replaces():
    recorded = {"tables": {"public.a": {"rows": 1}, "neon_auth.users": {"rows": 2}},
                "sequences": {"neon_auth.s": 2, "public.s": 1}}
    current = {"tables": {"public.a": {"rows": 1}}, "sequences": {"public.s": 1},
               "left_alone": {"schemas": ["neon_auth"], "extensions": []}}
    assert changes(recorded, current) == [] and moved_sequences(recorded, current) == []
    # Left alone when recorded, replaced now: never synced, so a write the guard must not let through.
    never_synced = {"tables": {"public.a": {"rows": 1}, "neon_auth.users": {"rows": 2}},
                    "left_alone": {"schemas": ["neon_auth"], "extensions": []}}
    assert [(c.table, c.kind) for c in changes(never_synced, {"tables": never_synced["tables"]})] == []
    assert [(c.table, c.kind) for c in changes({**never_synced, "tables": {"public.a": {"rows": 1}}},
                                               {"tables": never_synced["tables"]})] == [("neon_auth.users", "new table")]


def test_what_depends_across_the_boundary_is_one_refusal_naming_both_sides():
    scope = LeftAlone(("neon_auth",))
    assert scope.crossing_refusal("Neon", [], "RDS", []) is None
    refusal = scope.crossing_refusal("Neon", ["constraint f on table public.a -> table neon_auth.users"], "RDS",
                                     ["view neon_auth.v -> table public.a"])
    assert refusal.startswith("refused: the sync leaves alone schema neon_auth, and on Neon, what the sync copies "
                              "depends on what it leaves alone: constraint f on table public.a -> table "
                              "neon_auth.users.")
    assert "on RDS, what the sync leaves alone depends on what it replaces: view neon_auth.v -> table public.a" \
        in refusal and refusal.endswith("nothing was changed")


def test_a_refusal_for_writes_only_in_a_service_schema_says_to_leave_it_alone():
    from devops.sync.render import _service_schema
    from devops.sync.report import Change, Divergence, Verdict

    def found(*tables: str) -> Divergence:
        changes = [Change(table, "changed", 1, 2) for table in tables]
        return Divergence(Verdict.DIVERGED, [c.table for c in changes if not c.table.startswith("(")], changes)

    assert "leave it alone (--exclude-schema neon_auth" in _service_schema(found("neon_auth.users_sync"))
    assert _service_schema(found("neon_auth.users_sync", "public.projects")) == ""
    assert _service_schema(found("neon_auth.users_sync", "(schema)")) == ""


def test_a_run_leaves_alone_the_settings_and_its_flags_and_tells_an_ecs_task_both():
    settings = Settings.load({"exclude_schemas": "neon_auth"})
    left_alone = LeftAlone.of_run(settings, {"exclude_schema": "audit", "exclude_extension": "pg_session_jwt"})
    assert left_alone == LeftAlone(("neon_auth", "audit"), ("pg_session_jwt",))
    assert left_alone.as_flags() == {"exclude_schema": "neon_auth,audit", "exclude_extension": "pg_session_jwt"}
