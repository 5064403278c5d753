"""RabbitMQ: the service, user openstack with its permissions, no guest."""

from __future__ import annotations

import re

from ..engine import Phase, Step
from ..platforms import Platform
from .base import PerPlatform, Service, Port, Secret, Rule
from .common import ensure_service, service_ok


# rabbitmqctl under a bound of its own (a wedged Erlang node must not hang a step),
# in a UTF-8 locale (Elixir warns and misreads non-ASCII without one).
RMQ = "LC_ALL=C.UTF-8 timeout -k 5 60 rabbitmqctl"
# Each rabbitmqctl is bounded on the host (60 s, then killed 5 s later); the SSH limit
# is a little longer so the host's own bound speaks first.
RMQ_TIMEOUT = 75
AMQP = 5672


def _rabbit_state(ctx) -> dict:
    """One round trip: the users, openstack's permissions, and whether its password works.

    The password goes on stdin, never in argv; RabbitMQ 4's authenticate_user does not
    read stdin when -q is given, so that call has no -q (its output is discarded).
    """
    # The three start an Erlang VM each (~0.8 s): run side by side, outputs kept apart.
    r = ctx.sh("d=$(mktemp -d) && "
               f"{{ {RMQ} -s list_users </dev/null >$d/u 2>/dev/null & "
               f"{RMQ} -s list_user_permissions openstack </dev/null >$d/p 2>/dev/null & "
               f"{RMQ} authenticate_user openstack >/dev/null 2>&1 && echo auth-ok >$d/a; "
               "wait; }; awk '{print \"user\", $1}' $d/u; sed 's/^/perm /' $d/p; "
               "cat $d/a 2>/dev/null; rm -rf \"$d\"; true",
               stdin=ctx.secrets["rabbit_password"] + "\n", check=False, quiet=True,
               timeout=RMQ_TIMEOUT)  # the three run side by side
    lines = r.stdout.splitlines()
    return {
        "users": {ln[5:] for ln in lines if ln.startswith("user ")},
        "perms": any(ln == "perm /\t.*\t.*\t.*" for ln in lines),
        "auth": "auth-ok" in lines,
    }


def _rabbit_check(ctx) -> bool:
    if not service_ok(ctx, "rabbitmq-server"):
        return False
    st = _rabbit_state(ctx)
    return "openstack" in st["users"] and "guest" not in st["users"] and st["perms"] \
        and st["auth"]


def _rabbit_run(ctx) -> None:
    if not service_ok(ctx, "rabbitmq-server"):
        ensure_service(ctx, "rabbitmq-server", port=AMQP)
    st = _rabbit_state(ctx)
    pw = ctx.secrets["rabbit_password"] + "\n"
    if "openstack" not in st["users"]:
        ctx.sh(f"{RMQ} add_user openstack", stdin=pw, timeout=RMQ_TIMEOUT)
    elif not st["auth"]:
        ctx.output("user openstack exists; setting its password")
        ctx.sh(f"{RMQ} change_password openstack", stdin=pw, timeout=RMQ_TIMEOUT)
    if not st["perms"]:
        ctx.sh(f"{RMQ} set_permissions openstack '.*' '.*' '.*'", timeout=RMQ_TIMEOUT)
    if "guest" in st["users"]:
        # The default guest/guest account: only loopback may use it, but it has no place
        # in a cloud's broker.
        ctx.output("deleting RabbitMQ's default user guest")
        ctx.sh(f"{RMQ} delete_user guest", timeout=RMQ_TIMEOUT)


def phases(profile, plat: Platform) -> list[Phase]:
    """The rabbitmq phase as the plan shows and runs it."""
    return [Phase("rabbitmq", "RabbitMQ", [
        Step("rabbitmq.user", "Start RabbitMQ; user openstack with .* permissions",
             run=_rabbit_run, check=_rabbit_check,
             detail="systemctl enable --now rabbitmq-server; rabbitmqctl add_user / "
                    "change_password openstack (password on stdin); set_permissions .* .* .*; "
                    "delete_user guest"),
    ])]


# Its known failures, in plain words (tui/tasks/explain.py aggregates every service's).
RULES = (
    Rule("rabbitmq-down",
         re.compile(r"unable to perform an operation on node|nodedown|unable to connect to node|"
                    r"could not contact node|epmd (error|reports|failed)|erl_epmd|"
                    r"Failed to create cookie file|erlang\.cookie", re.I),
         "error",
         "the RabbitMQ node is down or unreachable; usually the host name does not resolve to "
         "an address the host has (epmd), or rabbitmq-server failed to start",
         "make /etc/hosts map the host name to its real address (`stack-tui check PROFILE "
         "--fix` does this), `systemctl restart rabbitmq-server`, then Retry",
         logs=("rabbitmq",)),
)


SERVICE = Service(
    "rabbitmq", "RabbitMQ", "message queue", phases,
    secrets=(Secret("rabbit_password", "RabbitMQ user 'openstack'"),),
    ports=(Port(AMQP, frozenset({"beam.smp"}), "RabbitMQ (AMQP)"),
           Port(4369, frozenset({"epmd", "beam.smp", "systemd"}), "Erlang port mapper (epmd)"),
           Port(25672, frozenset({"beam.smp"}), "RabbitMQ (node distribution)")),
    units=lambda plat: ("rabbitmq-server",),
    rules=RULES,
    packages=PerPlatform(deb=("rabbitmq-server",), rpm=("rabbitmq-server",)),
)
