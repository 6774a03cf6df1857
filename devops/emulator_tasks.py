"""ECS tasks run for real in the emulator: moto records a `run_task`, this module starts its container.

moto's ECS only records tasks (they stay RUNNING and never exit). Here each Fargate `run_task` starts the
task definition's first container through the local Docker engine, as ECS's agent would:

- the image: the container definition's, found in the local engine. moto has no registry API, so the
  runner's "push" in the sandbox tags the local image with the ECR repository's URI and records it with
  ECR's put_image (devops/remote.py); an image pinned by digest (``URI@sha256:...``) is looked up in the
  emulated ECR for its tag. An image the engine lacks stops the task with CannotPullContainerError.
- the environment: the definition's, then the run's overrides, and its ``secrets`` resolved from the
  emulated Secrets Manager (``ARN`` or ``ARN:json-key::``), plus what AWS gives a task implicitly: its
  region, here the emulator's endpoint, and the way to its task role's credentials (next).
- the credentials: as on Fargate, the task role's (the run's ``taskRoleArn`` override, else the definition's),
  from the container credentials endpoint, and no keys or profile in the environment. For each task the
  emulator serves them (devops/credential_server.py, on 127.0.0.1), assumed on its own STS with its admin
  credentials under the task's id as session name, and assumed again once they near their expiry; the
  server stops with the container. Fargate's agent answers at 169.254.170.2 and gives the task
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; the emulator can bind only loopback, so the container gets
  AWS_CONTAINER_CREDENTIALS_FULL_URI (http://127.0.0.1:PORT, which the SDKs accept: loopback) and
  AWS_CONTAINER_AUTHORIZATION_TOKEN. A definition without a task role gives the container no credentials.
- the network: the host's (``--network host``), so the stand-ins on 127.0.0.1 are reachable. The sandbox
  writes a JSON file (DEVOPS_EMULATOR_TASKS_CONFIG) with ``extra_hosts`` (the emulated RDS endpoint's
  host name -> 127.0.0.1, so it resolves inside the container as it does in the VPC), ``volumes`` (the
  sandbox's CA file, read-only) and ``environment`` (INVOKE_DEVOPS_RDS_ADDRESS=127.0.0.1:<port>: the
  stand-in listens on a random port, not 5432; the CA settings; INVOKE_DEVOPS_ALB_ADDRESS: the app
  stand-in, since the emulated ALB's name resolves nowhere).
- the output: each line into the emulated CloudWatch Logs, in the awslogs group and stream
  (``prefix/container/task-id``) the definition names, as it is printed.
- the end: the task goes STOPPED with the container's exitCode and a stoppedReason ("Essential container
  in task exited", OutOfMemoryError when the engine killed it for memory, or stop_task's reason).
  `stop_task` stops the container (SIGTERM, SIGKILL after 30 s, as ECS's default stopTimeout).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from typing import Any, Callable

import boto3

from devops.credential_server import CredentialServer, ServedCredentials

Task = Any  # moto's ECS task (moto.ecs.models.Task): moto is imported in install(), in the emulator only

TASKS_CONFIG_ENV = "DEVOPS_EMULATOR_TASKS_CONFIG"
LABEL = "devops.emulator.task"
STOP_TIMEOUT = 30
# The emulator's admin credentials (it accepts any; these are the conventional ones, the sandbox's too): its own
# clients use them, the tasks it runs never see them (they get their task role's).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
# A task role's credentials: assumed for this long, and again from this long before they expire. botocore's
# container provider asks again from 15 minutes before the expiry it was given (its advisory refresh): from
# then on, each ask gets new credentials.
ROLE_SESSION_SECONDS = 3600
ROLE_REFRESH = datetime.timedelta(minutes=15)


class TaskRunner:
    def __init__(self, endpoint: str, lock: threading.Lock):
        self.endpoint = endpoint
        self.lock = lock  # the server's request lock: task state changes wait for requests in flight
        self.containers: dict[str, Any] = {}  # task ARN -> docker container, while it runs

    def install(self) -> None:
        from moto.ec2.models.elastic_network_interfaces import NetworkInterface
        from moto.ecs.models import EC2ContainerServiceBackend
        from moto.moto_api import state_manager

        if not hasattr(NetworkInterface, "private_dns_name"):
            # moto 5.2's awsvpc run_task reads this attribute, which its network interfaces set only in some
            # subnets: AWS's form when it is missing.
            NetworkInterface.private_dns_name = property(  # type: ignore[attr-defined]
                lambda eni: eni.__dict__.get("_private_dns_name")
                or f"ip-{str(eni.private_ip_address).replace('.', '-')}.ec2.internal",
                lambda eni, value: eni.__dict__.__setitem__("_private_dns_name", value))

        # moto advances a task's status on each describe; here only the container's life moves it.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        run_task, stop_task = EC2ContainerServiceBackend.run_task, EC2ContainerServiceBackend.stop_task
        runner = self

        def run_and_start(backend: Any, *args: Any, **kwargs: Any) -> list[Task]:
            tasks = run_task(backend, *args, **kwargs)
            for task in tasks:
                if task.launch_type == "FARGATE" or task.capacity_provider_name in ("FARGATE", "FARGATE_SPOT"):
                    definition = backend.describe_task_definition(task.task_definition_arn)
                    spec = {"container": dict(definition.container_definitions[0]), "memory": definition.memory,
                            "task_role_arn": getattr(definition, "task_role_arn", None),  # moto: unset when none
                            "overrides": json.loads(json.dumps(task.overrides or {}))}
                    task.last_status = "PENDING"
                    task.containers[0].exitCode = None  # moto's default is 0: none until the container exits
                    threading.Thread(target=runner.run, args=(task, spec), daemon=True).start()
            return tasks

        def stop_and_kill(backend: Any, cluster: str, task_str: str, reason: str) -> Task:
            task = stop_task(backend, cluster, task_str, reason)
            task.stopped_reason = reason or "Task stopped by user"
            container = runner.containers.get(task.task_arn)
            if container is not None:
                task.last_status = "STOPPING"  # STOPPED once the container has exited
                threading.Thread(target=_quietly, args=(container.stop,), kwargs={"timeout": STOP_TIMEOUT},
                                 daemon=True).start()
            return task

        requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements

        def requirements_without_container_memory(definition: Any) -> Any:
            # moto adds up each container's memory, and Fargate lets a container have none (the task's
            # memory applies): count such a container as 0, as moto's placement never sees Fargate tasks.
            saved = definition.container_definitions
            definition.container_definitions = [
                c if ("memory" in c or "memoryReservation" in c or "Memory" in c or "MemoryReservation" in c)
                else {**c, "memory": 0} for c in saved]
            try:
                return requirements(definition)
            finally:
                definition.container_definitions = saved

        EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(  # type: ignore[method-assign]
            requirements_without_container_memory)
        EC2ContainerServiceBackend.run_task = run_and_start  # type: ignore[method-assign]
        EC2ContainerServiceBackend.stop_task = stop_and_kill  # type: ignore[method-assign]

    # ---- one task ------------------------------------------------------------------------------------

    def client(self, service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=region, **{
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})

    def run(self, task: Task, spec: dict[str, Any]) -> None:
        reason, exit_code = "", None
        try:
            with contextlib.ExitStack() as cleanup:
                reason, exit_code = self._run(task, spec, cleanup)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong becomes the task's stoppedReason
            reason = f"TaskFailedToStart: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            self.containers.pop(task.task_arn, None)
            with self.lock:
                if task.desired_status == "STOPPED" and task.stopped_reason:
                    reason = task.stopped_reason  # stop_task's reason wins, as on ECS
                container = task.containers[0]
                container.last_status = "STOPPED"
                container.exitCode = exit_code
                container.reason = reason if exit_code is None else None
                task.last_status, task.desired_status, task.stopped_reason = "STOPPED", "STOPPED", reason

    def _run(self, task: Task, spec: dict[str, Any], cleanup: contextlib.ExitStack) -> tuple[str, int | None]:
        import docker
        from docker.errors import ImageNotFound

        definition, region = spec["container"], task.region_name
        override = next((o for o in spec["overrides"].get("containerOverrides", [])
                         if o.get("name") == definition.get("name")), {})
        config = _tasks_config()
        environment = {item["name"]: item["value"] for item in definition.get("environment") or []}
        environment.update({item["name"]: item["value"] for item in override.get("environment") or []})
        try:
            environment.update({item["name"]: self._secret(item["valueFrom"], region)
                                for item in definition.get("secrets") or []})
        except Exception as exc:  # noqa: BLE001
            return ("ResourceInitializationError: unable to pull secrets or registry auth: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0]}", None)
        environment.update({"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": region,
                            "AWS_DEFAULT_REGION": region, **config.get("environment", {})})
        role = spec["overrides"].get("taskRoleArn") or spec.get("task_role_arn")
        if role:
            server = CredentialServer(RoleCredentials(self.client("sts", region), role, task.id))
            cleanup.callback(server.close)  # once the container has ended (or never started)
            environment.update(server.environment())
        image = self._local_image(definition["image"], region)
        engine = docker.from_env()
        memory = override.get("memory") or definition.get("memory") or spec["memory"]
        try:
            container = engine.containers.create(
                image, command=override.get("command") or definition.get("command"),
                environment=environment, network_mode="host", extra_hosts=config.get("extra_hosts") or None,
                volumes=config.get("volumes") or None,
                mem_limit=f"{memory}m" if memory else None, labels={LABEL: task.task_arn},
                name=f"ecs-task-{task.id}")
        except ImageNotFound:
            return (f"CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to "
                    f"resolve ref {definition['image']}: not found", None)
        self.containers[task.task_arn] = container
        try:
            with self.lock:
                if task.desired_status == "STOPPED":  # stopped before it started
                    return task.stopped_reason, None
                task.last_status = "RUNNING"
                task.containers[0].last_status = "RUNNING"
            container.start()
            self._forward_logs(container, task, definition, region)
            exit_code = container.wait()["StatusCode"]
            container.reload()
            if container.attrs["State"].get("OOMKilled"):
                return "OutOfMemoryError: Container killed due to memory usage", exit_code
            return "Essential container in task exited", exit_code
        finally:
            _quietly(container.remove, force=True)

    def _secret(self, value_from: str, region: str) -> str:
        # ARN (7 colon-separated fields), optionally followed by :json-key:version-stage:version-id
        parts = value_from.split(":")
        arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
        value = self.client("secretsmanager", region).get_secret_value(SecretId=arn)["SecretString"]
        return str(json.loads(value)[key]) if key else value

    def _local_image(self, image: str, region: str) -> str:
        """URI@sha256:digest -> URI:tag, the tag the sandbox's push gave the local image."""
        if "@" not in image:
            return image
        uri, digest = image.split("@", 1)
        repository = uri.split("/", 1)[1]
        with contextlib.suppress(Exception):
            found = self.client("ecr", region).describe_images(repositoryName=repository,
                                                               imageIds=[{"imageDigest": digest}])
            return f"{uri}:{found['imageDetails'][0]['imageTags'][0]}"
        return image

    def _forward_logs(self, container: Any, task: Task, definition: dict[str, Any], region: str) -> None:
        """The container's output, line by line as it comes, into its awslogs group and stream."""
        options = (definition.get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group")
        if not group:
            return
        stream = f"{options.get('awslogs-stream-prefix')}/{definition.get('name')}/{task.id}"
        logs = self.client("logs", options.get("awslogs-region") or region)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        pending = b""
        for chunk in container.logs(stream=True, follow=True):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            _put(logs, group, stream, lines)
        _put(logs, group, stream, [pending] if pending else [])


class RoleCredentials:
    """A task role's credentials, as ECS's agent gets them: the role assumed (on the emulator's STS, through
    ``sts``, a client with its admin credentials) under the task's id, kept until ROLE_REFRESH before they
    expire. Called by the task's CredentialServer on each ask."""

    def __init__(self, sts: Any, role_arn: str, session_name: str,
                 now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.timezone.utc)):
        self.sts, self.role_arn, self.session_name, self.now = sts, role_arn, session_name, now
        self._lock = threading.Lock()
        self._served: ServedCredentials | None = None

    def __call__(self) -> ServedCredentials:
        with self._lock:
            if self._served is None or self._served.expiry is None or self._served.expiry - self.now() <= ROLE_REFRESH:
                found = self.sts.assume_role(RoleArn=self.role_arn, RoleSessionName=self.session_name[:64],
                                             DurationSeconds=ROLE_SESSION_SECONDS)["Credentials"]
                self._served = ServedCredentials(found["AccessKeyId"], found["SecretAccessKey"],
                                                 found["SessionToken"], found["Expiration"])
            return self._served


def _put(logs: Any, group: str, stream: str, lines: list[bytes]) -> None:
    # Empty lines are left out, as the awslogs driver does (CloudWatch refuses an empty message).
    messages = [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
    events = [{"timestamp": int(time.time() * 1000), "message": m} for m in messages if m.strip()]
    if events:
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def _tasks_config() -> dict[str, Any]:
    path = os.environ.get(TASKS_CONFIG_ENV)
    if not path:
        return {}
    try:
        with open(path) as config:
            return json.load(config)
    except FileNotFoundError:
        return {}


def _quietly(action: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(Exception):
        action(*args, **kwargs)
