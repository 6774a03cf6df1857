"""OperationExecutor: which calls `inv activate/deactivate ...` makes, in which order, and what it skips.

Pure logic on a small collection of recording tasks (and, for the names, the real tasks.py collection);
the operations themselves run against the sandbox in test_operations.py.
"""

import pytest
from invoke import Collection, Config, Executor, Parser, task
from invoke.exceptions import Exit

from devops.cli import OperationExecutor, OperationTask, planned_of
from devops.environment import ACTIVE, PILOT, Operation, Planned

ACTIVATE = Operation("activate", ACTIVE, "sync.neon-to-rds", "Neon -> RDS", "ACTIVATION PLAN")
DEACTIVATE = Operation("deactivate", PILOT, "sync.rds-to-neon", "RDS -> Neon", "DEACTIVATION PLAN")


class Recorder:
    def __init__(self):
        self.calls = []
        self.proceed = True
        self.failing = set()
        self.planned = {}  # operation -> the Planned its plan step returned
        self.handed = []  # (operation, what its apply step's context carried)

    def record(self, name, **flags):
        self.calls.append((name, {k: v for k, v in flags.items() if v}))
        if name in self.failing:
            raise Exit(code=1)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def collection(recorder):
    def plan_for(operation):
        def plan(c, sync_data=False, dry_run=False, yes=False, on=None):
            recorder.record(f"{operation.name}.plan", sync_data=sync_data, dry_run=dry_run, yes=yes, on=on)
            recorder.planned[operation.name] = Planned(operation, proceed=recorder.proceed, confirmed=not dry_run)
            return recorder.planned[operation.name]
        plan.__name__ = f"plan_{operation.name}"  # as in tasks.py: two plan steps are two tasks (Task.__eq__)
        return plan

    @task
    def neon_to_rds(c, dry_run=False, yes=False, json=False, break_lock=False, on=None):
        recorder.record("sync.neon-to-rds", dry_run=dry_run, yes=yes, json=json, on=on)

    @task
    def rds_to_neon(c, dry_run=False, yes=False, json=False, break_lock=False, on=None):
        recorder.record("sync.rds-to-neon", dry_run=dry_run, yes=yes, json=json, on=on)

    @task
    def validate(c, verbose=False, json=False, on=None):
        recorder.record("validate", verbose=verbose, on=on)

    @task(klass=OperationTask, operation=ACTIVATE, plan=plan_for(ACTIVATE), post="validate")
    def activate(c, sync_data=False, dry_run=False, yes=False, on=None):
        recorder.handed.append(("activate", planned_of(c)))
        recorder.record("activate", dry_run=dry_run)

    @task(klass=OperationTask, operation=DEACTIVATE, plan=plan_for(DEACTIVATE), post="validate")
    def deactivate(c, sync_data=False, dry_run=False, yes=False, on=None):
        recorder.handed.append(("deactivate", planned_of(c)))
        recorder.record("deactivate", dry_run=dry_run)

    collection = Collection(Collection("sync", neon_to_rds, rds_to_neon), activate, deactivate, validate)
    collection.configure({"devops": {"toolbox": "host"}})  # run here, not re-run in the toolbox image
    return collection


def run(collection, *argv):
    executor = OperationExecutor(collection, Config())
    executor.execute(*Parser(contexts=collection.to_contexts()).parse_argv(list(argv)))
    return executor


def test_sync_data_runs_the_sync_as_a_pre_task_then_apply_then_validate(collection, recorder):
    run(collection, "activate", "--sync-data")
    assert recorder.calls == [
        ("activate.plan", {"sync_data": True}),
        ("sync.neon-to-rds", {"yes": True}),  # the plan step's confirmation covered it
        ("activate", {}),
        ("validate", {}),
    ]


def test_on_ecs_runs_the_sync_and_the_closing_validate_in_the_vpc(collection, recorder):
    """Terraform (the plan and apply steps) stays here, where its state is; the data and RDS checks go to the VPC."""
    run(collection, "deactivate", "--sync-data", "--on", "ecs", "--yes")
    assert recorder.calls == [
        ("deactivate.plan", {"sync_data": True, "yes": True, "on": "ecs"}),
        ("sync.rds-to-neon", {"yes": True, "on": "ecs"}),
        ("deactivate", {}),
        ("validate", {"on": "ecs"}),
    ]


def test_dry_run_reaches_the_sync_and_skips_validate(collection, recorder):
    run(collection, "deactivate", "--sync-data", "--dry-run")
    assert recorder.calls == [
        ("deactivate.plan", {"sync_data": True, "dry_run": True}),
        ("sync.rds-to-neon", {"dry_run": True, "yes": True}),
        ("deactivate", {"dry_run": True}),
    ]


def test_without_sync_data_there_is_no_sync(collection, recorder):
    run(collection, "activate", "--yes")
    assert [name for name, _ in recorder.calls] == ["activate.plan", "activate", "validate"]


@pytest.mark.parametrize("argv", [
    ("sync.neon-to-rds", "activate", "--sync-data"),
    ("activate", "--sync-data", "sync.neon-to-rds"),
])
def test_the_sync_runs_once_when_also_named(collection, recorder, argv):
    run(collection, *argv)
    names = [name for name, _ in recorder.calls]
    assert names.count("sync.neon-to-rds") == 1
    assert names.index("sync.neon-to-rds") < names.index("activate")
    assert names[-1] == "validate"


def test_validate_named_after_an_operation_runs_once(collection, recorder):
    run(collection, "activate", "validate")
    assert [name for name, _ in recorder.calls] == ["activate.plan", "activate", "validate"]


def test_nothing_to_do_skips_the_rest_of_the_operation(collection, recorder, capsys):
    recorder.proceed = False
    executor = run(collection, "activate", "--sync-data")
    assert [name for name, _ in recorder.calls] == ["activate.plan"]
    assert [r.status for r in executor.results] == ["ok"]
    assert "skipped" in capsys.readouterr().out


def test_a_failed_sync_stops_before_the_apply_and_the_summary_says_so(collection, recorder, capsys):
    recorder.failing.add("sync.rds-to-neon")
    with pytest.raises(Exit):
        run(collection, "deactivate", "--sync-data", "--yes")
    assert [name for name, _ in recorder.calls] == ["deactivate.plan", "sync.rds-to-neon"]
    out = capsys.readouterr().out
    assert "failed" in out and "not run" in out and "total" in out


def test_every_step_is_timed_in_the_summary(collection, recorder, capsys):
    executor = run(collection, "activate", "--sync-data", "--yes")
    assert [r.label for r in executor.results] == ["activate (plan)", "sync.neon-to-rds", "activate", "validate"]
    out = capsys.readouterr().out
    for label in ("activate (plan)", "sync.neon-to-rds", "validate", "total"):
        assert label in out


def test_the_real_collection_wires_each_operation_to_its_sync():
    import tasks

    executor = OperationExecutor(tasks.ns, Config())
    for argv, sync in ((["activate", "--sync-data"], "sync.neon-to-rds"),
                       (["deactivate", "--sync-data"], "sync.rds-to-neon"),
                       (["sync.rds-to-neon", "deactivate", "--sync-data"], "sync.rds-to-neon")):
        calls = executor.plan_calls(*Parser(contexts=tasks.ns.to_contexts()).parse_argv(argv))
        names = [getattr(call, "label", call.called_as) for call in calls]
        operation = argv[-2]
        assert names.count(sync) == 1 and names.index(sync) < names.index(operation), names
        assert names[-1] == "validate"


def test_a_failing_validate_is_the_exit_code(collection, recorder):
    recorder.failing.add("validate")
    with pytest.raises(Exit) as raised:
        run(collection, "activate", "--yes")
    assert raised.value.code == 1
    assert [name for name, _ in recorder.calls] == ["activate.plan", "activate", "validate"]


# --------------------------------------------------------------------------------------------------
# The plan step's result reaches the apply step through the executor, not a flag, a file or a global


def test_the_apply_step_gets_what_its_own_plan_step_returned(collection, recorder):
    run(collection, "activate", "--yes", "deactivate", "--yes")
    assert [name for name, _ in recorder.calls] == ["activate.plan", "activate", "validate", "deactivate.plan",
                                                    "deactivate"]
    assert recorder.handed == [("activate", recorder.planned["activate"]),
                               ("deactivate", recorder.planned["deactivate"])]
    assert all(planned is not None for _, planned in recorder.handed)


def test_a_plan_the_apply_step_did_not_use_is_discarded_at_the_end(collection, recorder, tmp_path):
    """A failed sync leaves the confirmed plan unapplied: its saved plan goes with the run."""
    recorder.failing.add("sync.neon-to-rds")
    plan_dir = tmp_path / "devops-plan-x"
    plan_dir.mkdir()
    original = collection["activate"].plan_step.body

    def plan_with_a_file(c, **flags):
        planned = original(c, **flags)
        planned.plan_dir = plan_dir
        return planned

    collection["activate"].plan_step.body = plan_with_a_file
    with pytest.raises(Exit):
        run(collection, "activate", "--sync-data", "--yes")
    assert recorder.handed == []
    planned = recorder.planned["activate"]
    assert not plan_dir.exists() and planned.plan_file is None and not planned.confirmed


def test_the_task_run_by_another_executor_gets_no_plan(collection, recorder):
    Executor(collection, Config()).execute(("activate", {"yes": True}))
    assert recorder.handed == [("activate", None)]


def test_the_handover_adds_no_flag_and_no_task():
    """`inv --help activate` shows the operation's four flags, and `inv --list` no plan step."""
    import tasks

    contexts = {context.name: context for context in tasks.ns.to_contexts()}
    for name in ("activate", "deactivate"):
        assert sorted(contexts[name].flags) == ["--dry-run", "--on", "--sync-data", "--yes"], contexts[name].flags
    assert not [name for name in tasks.ns.task_names if "plan" in name]
