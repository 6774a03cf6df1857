"""The app stand-in: python -m http.server, whose only page is /api/health (200). The ALB address override
(devops.alb_address) points `inv validate`'s health check at it, since the emulated ALB's DNS name resolves
nowhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from devops.console import Console
from devops.sandbox.postgres import HOST
from devops.sandbox.processes import free_port, http_ok, runs, wait_for


def start_app(folder: Path, console: Console, port: int | None = None) -> dict[str, Any]:
    """Start the app stand-in (on ``port``, else a free one); returns its record for the state (port, pid)."""
    root = folder / "app"
    (root / "api").mkdir(parents=True, exist_ok=True)
    (root / "api" / "health").write_text('{"status": "ok"}\n')
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", HOST, "--directory", str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    wait_for(lambda: process.poll() is None and http_ok(f"http://{HOST}:{port}/api/health"), 30,
             "the app stand-in")
    console.info(f"App stand-in (GET /api/health) on http://{HOST}:{port}")
    return {"port": port, "pid": process.pid}


def describe_app(state: dict[str, Any]) -> dict[str, Any]:
    """Its row in `sandbox.status`."""
    app = state["app"]
    return {"component": "app", "address": f"http://{HOST}:{app['port']}/api/health",
            "running": runs(state, app.get("pid"), app["port"]),
            "detail": "app stand-in behind the ALB address override (devops.alb_address)"}
