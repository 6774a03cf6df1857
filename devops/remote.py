"""`--on ecs`: a task's same `inv` command line, run as a one-off ECS Fargate task inside the VPC.

    image       the toolbox image plus this checkout's code (tasks.py, invoke.yaml, devops/), tagged by a
                hash of both, pushed to the toolbox ECR repository only when ECR lacks that tag
    definition  registered for that image's digest (one revision per image; reused while the image is the
                same): Fargate, the task and execution roles, awslogs into the operations log group, and
                NEON_DATABASE_URL injected by ECS from its Secrets Manager secret
    plan        a sync or restore without --yes runs twice: first as `--dry-run --json` in the VPC, whose plan
                is shown and confirmed here, then with --yes --expect-target <the plan's target fingerprint>,
                which refuses if the target changed in between
    run         run_task in the public subnets with a public IP (no NAT gateway), the operations security
                group; the command line and the Terraform outputs it needs as overrides (no secret)
    follow      the task's log lines printed as they arrive (CloudWatch get_log_events with its tokens: in
                order, each once), except its report, in marked lines (console.REPORT_PREFIX) turned back
                into the object: `--json` here prints it; its container's exit code becomes ours; an
                abnormal stop is one [ERROR] line with the task's stoppedReason; Ctrl-C stops the task

In the sandbox (an emulator instead of AWS) there is no registry to push to: the "push" tags the local image
with the repository's URI and records it with ECR's put_image, and the emulator's ECS runs that local image
(devops/emulator_tasks.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import sys
import tarfile
import time
from typing import Any, Callable, Iterable

from devops import aws, hints, toolbox
from devops.config import REPO_ROOT, Settings
from devops.console import REPORT_LINE_ENV, REPORT_PREFIX, Console
from devops.environment import runner
from devops.errors import DevopsError
from devops.sync import render
from devops.sync.report import Report, Status, Verdict
from devops.terraform import Terraform

CONTAINER = "devops"
# The code the task runs, copied onto the toolbox image (everything else the image already has).
CODE = ("tasks.py", "invoke.yaml", "devops")
APP_DIR = "/opt/devops"
# The Terraform outputs go to the task (it has no access to the Terraform state): names, ARNs, endpoints, no
# secret. `operations` is the runner's own.
OUTPUTS_ENV = "DEVOPS_TERRAFORM_OUTPUTS"
NORMAL_STOP = "Essential container in task exited"
POLL = 1.0
# The tasks whose one confirmation stays here, with their plan computed in the VPC.
CONFIRMED_TASKS = ("sync.neon-to-rds", "sync.rds-to-neon", "sync.restore")


def dispatch(settings: Settings, on: str | None, args: list[str], flags: dict[str, Any]) -> int | None:
    """Run ``inv ARGS FLAGS`` as an ECS task when the runner is ecs: its exit code (the remote printed why it
    failed, in its own [ERROR] line). None: the runner is local, the task runs here."""
    if runner(settings, on) != "ecs":
        return None
    if flags.get("drift"):
        raise DevopsError("--drift runs terraform plan, which needs the Terraform state: run it without --on ecs")
    console = Console(json_mode=bool(flags.get("json")))
    confirming = args[0] in CONFIRMED_TASKS and not (flags.get("yes") or flags.get("dry_run"))
    if confirming and not sys.stdin.isatty():
        raise DevopsError(f"refusing to run {args[0]} without confirmation: no terminal to ask on; pass --yes")
    launch = prepare(settings, console, args[0])  # once: the plan's run and the real one share it
    if confirming:
        code, fingerprint = confirmed_plan(settings, console, launch, args, flags)
        if code:
            return code
        flags = {**flags, "yes": True, "expect_target": fingerprint}
    # The remote prints what a local run prints (so, with --json, the report: relayed as the same object).
    code, report = run(settings, console, launch, [*args, *command_flags(flags)])
    if flags.get("json") and report is not None:
        console.emit(report)
    return code


def confirmed_plan(settings: Settings, console: Console, launch: "Launch", args: list[str],
                   flags: dict[str, Any]) -> tuple[int, str]:
    """The plan computed in the VPC (a remote --dry-run --json), shown and confirmed here: (0, the target's
    fingerprint in it, for the real run's --expect-target), or the dry run's exit code when it failed."""
    console.info("The plan is computed in the VPC (a dry run there); the question is asked here")
    code, plan = run(settings, console, launch, [*args, *command_flags({**flags, "dry_run": True, "json": True})],
                     hide=lambda line: "Dry run complete." in line)
    if code:
        return code, ""
    if not plan or "target_state" not in plan:
        raise DevopsError("the ECS task's dry run gave no plan: nothing was changed; see its lines above")
    report = Report.from_json(plan)
    if report.divergence.verdict == Verdict.DIVERGED and not flags.get("force"):
        raise render.refusal(dataclasses.replace(report, status=Status.REFUSED))
    render.confirm(console, report, yes=False)
    return 0, report.target_state.fingerprint


def command_flags(flags: dict[str, Any]) -> list[str]:
    """The task's flags as its command line: --name for a set switch, --name VALUE for a given value."""
    line: list[str] = []
    for name, value in flags.items():
        option = f"--{name.replace('_', '-')}"
        if value is True:
            line.append(option)
        elif isinstance(value, str) and value:
            line += [option, value]
    return line


# ---- the image ---------------------------------------------------------------------------------------


def _code_files() -> Iterable[tuple[str, bytes]]:
    for name in CODE:
        path = REPO_ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for file in files:
            yield str(file.relative_to(REPO_ROOT)), file.read_bytes()


def image_tag() -> str:
    """The toolbox image's tag (its content hash) and a hash of the code: a new tag whenever either changes."""
    digest = hashlib.sha256(toolbox.image("toolbox").encode())
    for name, data in _code_files():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"ops-{digest.hexdigest()[:12]}"


def build(console: Console, engine: Any, tag: str) -> str:
    """The task image, built locally (when missing) from the toolbox image and the code."""
    base = toolbox.image("toolbox")
    local = f"{base.partition(':')[0]}:{tag}"
    if engine.images.list(name=local):
        return local
    # STOPSIGNAL SIGINT: stop_task then reaches the sync as Ctrl-C does in a terminal (tini forwards it to
    # the process group): the restore rolls back, the lock is released, exit 130.
    dockerfile = (f"FROM {base}\nCOPY --chown=toolbox:toolbox . {APP_DIR}\nWORKDIR {APP_DIR}\n"
                  'STOPSIGNAL SIGINT\nCMD ["inv", "--list"]\n')
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in [("Dockerfile", dockerfile.encode()), *_code_files()]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    console.info(f"Building the task image {local} (the toolbox image and this checkout's code)")
    engine.images.build(fileobj=context, custom_context=True, tag=local, rm=True)
    return local


def push(settings: Settings, console: Console, engine: Any, local: str, ops: dict[str, Any], tag: str) -> str:
    """The image in ECR under ``tag``, pushed only when ECR lacks it; its digest."""
    ecr = aws.client(settings, "ecr")
    repository, uri = ops["repository_name"], f"{ops['repository_url']}:{tag}"
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except ecr.exceptions.ImageNotFoundException:
        found = []
    if found:
        console.info(f"Image {uri} already in ECR: not pushed")
        return found[0]["imageDigest"]
    started = time.monotonic()
    image = engine.images.get(local)
    image.tag(ops["repository_url"], tag)
    if settings.uses_emulator:
        # No registry behind the emulator: record the image in ECR; the emulator runs the local one by its URI.
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "digest": image.id, "size": 0}, "layers": []}
        digest = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest),
                               imageTag=tag)["image"]["imageId"]["imageDigest"]
    else:
        digest = _docker_push(settings, engine, ops["repository_url"], tag)
    console.info(f"Image pushed to {uri} in {time.monotonic() - started:.1f} s")
    return digest


def _docker_push(settings: Settings, engine: Any, repository_url: str, tag: str) -> str:
    token = aws.client(settings, "ecr").get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    auth = {"username": user, "password": password}
    digest = ""
    for event in engine.images.push(repository_url, tag=tag, auth_config=auth, stream=True, decode=True):
        if event.get("error"):
            raise DevopsError(f"pushing {repository_url}:{tag} failed: {event['error']}")
        digest = (event.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise DevopsError(f"pushing {repository_url}:{tag} gave no digest: retry")
    return digest


# ---- the task definition and the run -----------------------------------------------------------------


def task_definition(settings: Settings, ops: dict[str, Any], digest: str, task: str) -> str:
    """The definition for this image digest and task: the family's latest when it runs it, else a new
    revision. validate has a family of its own, with its read-only role; everything else runs as the sync."""
    ecs = aws.client(settings, "ecs")
    image = f"{ops['repository_url']}@{digest}"
    family, role = ((f"{ops['task_family']}-validate", ops["validate_role_arn"]) if task == "validate"
                    else (ops["task_family"], ops["task_role_arn"]))
    try:
        latest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        if latest["containerDefinitions"][0]["image"] == image and latest.get("status") == "ACTIVE":
            return latest["taskDefinitionArn"]
    except ecs.exceptions.ClientException:
        pass
    return ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
        cpu="1024", memory="2048", executionRoleArn=ops["execution_role_arn"], taskRoleArn=role,
        containerDefinitions=[{
            "name": CONTAINER, "image": image, "essential": True,
            # ECS reads the secret with the execution role and sets the variable: the URL is in no definition.
            "secrets": [{"name": "NEON_DATABASE_URL", "valueFrom": ops["neon_url_secret_arn"]}],
            "environment": [{"name": "INVOKE_DEVOPS_PROJECT_NAME", "value": settings.project_name},
                            {"name": "INVOKE_DEVOPS_TOOLBOX", "value": "host"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": ops["log_group"], "awslogs-region": settings.region,
                "awslogs-stream-prefix": "ops"}},
        }],
    )["taskDefinition"]["taskDefinitionArn"]


@dataclasses.dataclass(frozen=True)
class Launch:
    """What every run of a task needs, resolved once per invocation."""

    ops: dict[str, Any]  # the `operations` output
    definition: str  # the task definition's ARN
    outputs: dict[str, Any]  # the other outputs, passed to the task (names, ARNs, endpoints: no secret)


def prepare(settings: Settings, console: Console, task: str) -> Launch:
    """The outputs, the Neon URL's secret checked, the image built and pushed when needed, its definition."""
    outputs = Terraform(settings).outputs(aws.client(settings, "s3"))
    ops = outputs.get("operations")
    if not ops:
        raise DevopsError("Terraform outputs lack `operations`: apply terraform/environments/dev first "
                          "(it creates the ECR repository, cluster and roles --on ecs needs)")
    engine = toolbox.client(hint="--on ecs builds and pushes the task image with it: start Docker (or set DOCKER_HOST)")
    require_neon_url(settings, ops["neon_url_secret_arn"])
    tag = image_tag()
    digest = push(settings, console, engine, build(console, engine, tag), ops, tag)
    return Launch(ops, task_definition(settings, ops, digest, task),
                  {name: value for name, value in outputs.items() if name != "operations"})


def run(settings: Settings, console: Console, launch: Launch, args: list[str],
        hide: Callable[[str], bool] | None = None) -> tuple[int, dict[str, Any] | None]:
    """Run ``inv ARGS`` as an ECS task and follow it: its exit code and its report (None without one)."""
    ops = launch.ops
    reply = aws.client(settings, "ecs").run_task(
        cluster=ops["cluster"], taskDefinition=launch.definition, launchType="FARGATE", count=1,
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": ops["subnet_ids"], "securityGroups": [ops["security_group_id"]],
            "assignPublicIp": "ENABLED"}},  # no NAT gateway: the public IP reaches Neon, ECR, Logs
        overrides={"containerOverrides": [{
            "name": CONTAINER, "command": ["inv", *args],
            "environment": [{"name": OUTPUTS_ENV, "value": json.dumps(launch.outputs, sort_keys=True)},
                            {"name": REPORT_LINE_ENV, "value": "1"},
                            # The commands it prints are for the user here: as the user runs them.
                            {"name": hints.INV_ENV, "value": hints.command()}]}]},
        startedBy="devops-runner",
    )
    if not reply.get("tasks"):
        reasons = "; ".join(f"{f.get('arn', '')}: {f.get('reason', '')}" for f in reply.get("failures", []))
        raise DevopsError(f"ECS did not start the task: {reasons or 'no reason given'}")
    arn = reply["tasks"][0]["taskArn"]
    console.info(f"Running `inv {' '.join(args)}` as ECS task {arn.split('/')[-1]} in {ops['cluster']}")
    return follow(settings, console, ops, arn, hide)


def require_neon_url(settings: Settings, secret_arn: str) -> None:
    """The task gets NEON_DATABASE_URL from this secret, which Terraform creates empty: without a value ECS
    cannot start the task (ResourceInitializationError), so say so first, with the fix. Only the secret's
    metadata is read here, never its value."""
    stages = aws.client(settings, "secretsmanager").describe_secret(SecretId=secret_arn).get("VersionIdsToStages", {})
    if not any("AWSCURRENT" in labels for labels in stages.values()):
        raise DevopsError(f"the Neon URL secret {secret_arn.rsplit(':', 1)[-1]} is empty: store the URL first "
                          f"(printf '%s' \"$NEON_DATABASE_URL\" | {hints.inv('secrets.set-neon-url')})")


def follow(settings: Settings, console: Console, ops: dict[str, Any], arn: str,
           hide: Callable[[str], bool] | None = None) -> tuple[int, dict[str, Any] | None]:
    """The task's lines printed as they come (but ``hide``'s and its report line), until it stops: its exit
    code and report. An abnormal stop raises, and so does Ctrl-C, once the task is stopped."""
    ecs, logs = aws.client(settings, "ecs"), aws.client(settings, "logs")
    stream = f"ops/{CONTAINER}/{arn.split('/')[-1]}"
    token: str | None = None
    report = ""  # the report's marked lines, joined

    def drain() -> None:
        nonlocal token, report
        while True:
            try:
                page = logs.get_log_events(logGroupName=ops["log_group"], logStreamName=stream, startFromHead=True,
                                           **({"nextToken": token} if token else {}))
            except logs.exceptions.ResourceNotFoundException:
                return  # the container has not written yet
            for event in page["events"]:
                message = event["message"]
                if message.startswith(REPORT_PREFIX):
                    report += message[len(REPORT_PREFIX):]
                elif not (hide and hide(message)):
                    console.line(message)
            if page["nextForwardToken"] == token:
                return
            token = page["nextForwardToken"]

    def describe() -> dict[str, Any]:
        return ecs.describe_tasks(cluster=ops["cluster"], tasks=[arn])["tasks"][0]

    try:
        while (task := describe())["lastStatus"] != "STOPPED":
            drain()
            time.sleep(POLL)
    except KeyboardInterrupt:
        console.info("Ctrl-C: stopping the ECS task (its restore rolls back, its lock is released)...")
        ecs.stop_task(cluster=ops["cluster"], task=arn, reason="Interrupted by the user (Ctrl-C)")
        while describe()["lastStatus"] != "STOPPED":
            drain()
            time.sleep(POLL)
        drain()
        raise
    drain()
    code = task["containers"][0].get("exitCode")
    reason = task.get("stoppedReason", "")
    if code is None or reason != NORMAL_STOP:
        raise DevopsError(f"the ECS task stopped abnormally: {reason or 'no reason given'}"
                          + (f" (exit code {code})" if code is not None else ""), exit_code=code or 1)
    return code, json.loads(report) if report else None
