"""Files that may hold secrets (the sandbox's passwords and state, the Terraform outputs' cache)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """A new file readable by its owner only from its first byte (O_EXCL: never a leftover's mode)."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)
