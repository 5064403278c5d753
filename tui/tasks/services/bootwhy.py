"""Why a test server is not ACTIVE, in words (cloudobjects' boots): Nova's fault; else what
it still waits for, with the log lines of the host it boots on, read through the run's own
context for that host, and of Nova's conductor on the controller."""

from __future__ import annotations

import re
from typing import Callable

from ..engine import StepError
from .common import LOOK


# What a server that is not ACTIVE shows of its cause: nova-compute's and the L2 agent's own
# lines on the host it boots on, Nova's scheduling on the controller.
HOST_LOGS = ("/var/log/nova/nova-compute.log", "/var/log/neutron/neutron-linuxbridge-agent.log",
             "/var/log/neutron/neutron-openvswitch-agent.log")
CONTROLLER_LOGS = ("/var/log/nova/nova-conductor.log", "/var/log/nova/nova-scheduler.log")


def _log_lines(ctx, files) -> list[str]:
    """The last ERROR / WARNING lines of each of ``files`` that exists (only reads)."""
    cmd = "; ".join(f"[ -f {f} ] && tail -n 3000 {f} | grep -E ' (ERROR|WARNING|CRITICAL) ' | "
                    f"tail -n 5 | sed 's|^|{f.rsplit('/', 1)[-1]}: |'" for f in files)
    try:
        return ctx.sh(cmd + "; true", check=False, quiet=True, timeout=LOOK).lines
    except Exception:  # noqa: BLE001 - the explanation must never fail the failure
        return []


# Nova's fault when its own wait for the port (network-vif-plugged) ran out
NETWORK_WAIT = re.compile(r"Failed to allocate the network|Virtual Interface creation failed",
                          re.I)


def not_active(ctx, cur: dict, where: str, ports: Callable[[], list], limit: int) -> StepError:
    """Why ``cur`` is not ACTIVE, in words: Nova's fault; else what it still waits for (a
    port the host's Neutron agent never reported wired is the usual one: Nova waits for
    network-vif-plugged before it starts the guest)."""
    fault = (cur.get("fault") or {}).get("message", "")
    task = cur.get("OS-EXT-STS:task_state") or "building"
    host = cur.get("OS-EXT-SRV-ATTR:host") or where
    why = fault
    if not why:
        try:
            found = ports()
        except Exception:  # noqa: BLE001 - Neutron not answering is itself the answer
            found = None
        waited = f"still {task} after {limit} s"
        down = [p for p in found or [] if p.get("status") != "ACTIVE"]
        if found is None:
            why = f"{waited}, and Neutron's API does not answer"
        elif not found:
            why = f"{waited}, without a network port"
        elif down:
            why = (f"{waited}: its network port is {down[0].get('status')}; Neutron's agent"
                   f"{' on ' + host if host else ''} never reported it wired, and Nova waits for "
                   "that (network-vif-plugged) before it starts the guest")
        else:
            why = waited
    engine = getattr(ctx, "engine", None)
    there = (engine.contexts.get(where) if engine is not None and where else None) or ctx
    tail = _log_lines(there, HOST_LOGS)
    if there is not ctx:
        tail += _log_lines(ctx, CONTROLLER_LOGS)
    else:
        tail += _log_lines(ctx, CONTROLLER_LOGS[:1])
    # Still BUILD without a fault: it waited on something that may yet come (seen on a
    # loaded 2-core CI machine: a port the agent never reported up); so did an ERROR of that
    # same wait running out on Nova's side first (vif_plugging_timeout). The step boots it
    # once more by itself. Any other ERROR is Nova's verdict: the user decides.
    retry = (cur["status"] == "BUILD" and not fault) or bool(NETWORK_WAIT.search(fault))
    return StepError(f"The test server ended {cur['status']}, not ACTIVE.", why,
                     f"read the log lines below (nova-compute and the Neutron agent"
                     f"{' on ' + host if host else ''}; Nova's conductor on the controller)",
                     tail=tail, transient=retry)
