"""RDS's storage as AWS reports it, for the plan's check of the room the replace needs (decisions.rds_room).

Its allocated storage and storage autoscaling's ceiling come from the instance's description, which the
preflight read already to see it `available` (no request of its own); what is free is CloudWatch's
FreeStorageSpace of the instance (one request, made while the plan reads the databases). A CloudWatch that has
no datapoint, or does not answer (a role without cloudwatch:GetMetricStatistics), is no failure: the check then
counts the allocated storage less the databases' sizes, and the plan says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from devops import aws
from devops.sync.database import Database
from devops.sync.decisions import RdsStorage
from devops.sync.preflight import Environment

# RDS publishes FreeStorageSpace every minute; the lowest of the newest minute within this window is taken.
WINDOW = dt.timedelta(minutes=15)
PERIOD = 60


def rds_storage(env: Environment, target: Database) -> RdsStorage | None:
    """The target RDS's storage (None for a target Neon, or an RDS whose description the preflight did not
    read): one CloudWatch request."""
    described = env.rds_instance if target.side == "rds" else None
    if not described:
        return None
    instance = described.get("DBInstanceIdentifier") or ""
    cloudwatch = env.clients("cloudwatch") if env.clients else aws.client(env.settings, "cloudwatch")
    free, unmeasured = free_storage(cloudwatch, instance)
    return RdsStorage(instance, int(described.get("AllocatedStorage") or 0),
                      int(described["MaxAllocatedStorage"]) if described.get("MaxAllocatedStorage") else None,
                      free, unmeasured)


def free_storage(cloudwatch: Any, instance: str, now: dt.datetime | None = None) -> tuple[int | None, str]:
    """(FreeStorageSpace in bytes, "") from the newest datapoint of the last 15 minutes (its minute's lowest); or
    (None, why not)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        answer = cloudwatch.get_metric_statistics(
            Namespace="AWS/RDS", MetricName="FreeStorageSpace",
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance}],
            StartTime=now - WINDOW, EndTime=now, Period=PERIOD, Statistics=["Minimum"])
    except Exception as exc:  # noqa: BLE001 - any failure: the check counts otherwise, and says why
        return None, f"CloudWatch's FreeStorageSpace could not be read ({aws.describe(exc)})"
    points = [point for point in answer.get("Datapoints") or [] if point.get("Minimum") is not None]
    if not points:
        return None, "CloudWatch has no FreeStorageSpace of the last 15 minutes"
    return int(max(points, key=lambda point: point["Timestamp"])["Minimum"]), ""
