"""The sandbox's network as a process of its own: network.py's proxy in front of the Neon and RDS stand-ins and
the emulator, started, described, and its control reached (round-trip time, what crossed it).

network.py is imported only when its control is asked for: `python -m devops.sandbox.network` imports this
package before it runs the module as __main__, and a module imported by then would be loaded twice (runpy warns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from devops.config import REPO_ROOT
from devops.console import Console
from devops.sandbox.postgres import HOST
from devops.sandbox.processes import free_port, port_open, runs, wait_for


def start_network(folder: Path, state: dict[str, Any], rtt_ms: float, console: Console) -> dict[str, Any]:
    """Start the proxy with a route to each of neon, rds and aws (whose ports ``state`` records); returns its
    record for the state (pid, control port, the routes' ports)."""
    upstreams = {"neon": state["neon"]["port"], "rds": state["rds"]["port"], "aws": state["emulator"]["port"]}
    routes = {name: free_port() for name in upstreams}
    control = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devops.sandbox.network", "--control", str(control), "--rtt-ms", str(rtt_ms),
         # The emulator speaks HTTP where AWS speaks HTTPS: the network charges TLS's handshake.
         *(f"--route={name}:{routes[name]}:{upstream}{':tls' if name == 'aws' else ''}"
           for name, upstream in upstreams.items())],
        stdout=subprocess.DEVNULL, stderr=(folder / "network.log").open("w"), stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=REPO_ROOT,
    )
    wait_for(lambda: process.poll() is None and port_open(control), 30, "the sandbox's network")
    console.info(f"Network: Neon, RDS and AWS through {HOST}:{routes['neon']}, {routes['rds']}, "
                 f"{routes['aws']} ({rtt_ms:g} ms round trips)")
    return {"pid": process.pid, "control": control, "routes": routes}


def describe_network(state: dict[str, Any], rtt_ms: float) -> dict[str, Any]:
    """Its row in `sandbox.status`."""
    network = state["network"]
    return {"component": "network", "address": f"{HOST}:{network['control']}",
            "running": runs(state, network.get("pid"), network["control"]),
            "detail": f"the tasks' way to Neon, RDS and AWS: {rtt_ms:g} ms "
                      "round trips (devops.sandbox_rtt_ms), counted"}


def network_control(state: dict[str, Any]) -> Any:
    """The control of the running network (devops.sandbox.network.Network)."""
    from devops.sandbox.network import Network

    return Network(state["network"]["control"])
