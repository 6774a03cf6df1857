"""The RDS stand-in's storage, as the emulator's CloudWatch reports it: FreeStorageSpace (namespace AWS/RDS,
dimension DBInstanceIdentifier), as RDS publishes it every minute for the whole volume.

The emulated instance's allocated storage (Terraform's db_allocated_storage: 20 GiB), or the sandbox's
``sandbox_rds_storage_mb`` when set, less what the stand-in's data folder takes on disk (its databases, WAL and
all, as FreeStorageSpace counts them), computed each time CloudWatch is read (devops/emulator.py), so that it
follows every write. The sandbox names the instance and the folder in a file of its own (``rds-storage.json``,
named to the emulator by CONFIG_ENV); a test makes the storage small with ``set_storage``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CONFIG = "rds-storage.json"
CONFIG_ENV = "DEVOPS_SANDBOX_RDS_STORAGE"
MB = 1024 * 1024
GIB = 1024 ** 3


def write_config(folder: Path, instance: str, data_dir: Path, storage_mb: int) -> None:
    """Which emulated instance the stand-in in ``data_dir`` plays, and its storage (0: the instance's own)."""
    config = {"instance": instance, "data_dir": str(data_dir), "storage_mb": int(storage_mb)}
    path = folder / CONFIG
    path.with_suffix(".tmp").write_text(json.dumps(config, indent=2) + "\n")
    path.with_suffix(".tmp").replace(path)  # whole, for the emulator reading it at any time


def set_storage(folder: Path, storage_mb: int) -> None:
    """The stand-in's storage in MB as FreeStorageSpace counts it from now on (0: the instance's allocated)."""
    config = json.loads((folder / CONFIG).read_text())
    write_config(folder, config["instance"], Path(config["data_dir"]), storage_mb)


def disk_usage(path: Path) -> int:
    """The bytes the files under ``path`` take on disk (du's count); files that go while it counts are skipped."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def free_storage_space(allocated_gib: dict[str, int], config_path: str | None = None) -> dict[str, int]:
    """FreeStorageSpace in bytes by instance, for the instances the sandbox named (``allocated_gib``: every
    emulated instance's allocated storage). Nothing when there is no config (no sandbox, or not yet applied)."""
    config_path = config_path or os.environ.get(CONFIG_ENV)
    if not config_path:
        return {}
    try:
        config: dict[str, Any] = json.loads(Path(config_path).read_text())
    except (OSError, ValueError):
        return {}
    instance = config.get("instance")
    if instance not in allocated_gib:
        return {}
    storage = int(config.get("storage_mb") or 0) * MB or allocated_gib[instance] * GIB
    return {instance: max(storage - disk_usage(Path(config["data_dir"])), 0)}
