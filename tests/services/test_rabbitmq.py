"""RabbitMQ's step on a scripted fake host with a small broker model: user openstack with its
permissions, no guest, the password only on stdin; a re-run changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fakehost import FakeHost
from tui.tasks.engine import Engine, Plan, Status
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import rabbitmq

PASSWORD = "s3cret $(rm -rf /) 'q\""


@dataclass
class Broker:
    users: dict[str, str] = field(default_factory=lambda: {"guest": "guest"})
    perms: set[str] = field(default_factory=set)


def _host(broker: Broker) -> FakeHost:
    host = FakeHost().systemd("rabbitmq-server", active=True, enabled=True)

    def state(h, m, stdin):
        out = [f"user {u}" for u in broker.users]
        if "openstack" in broker.perms:
            out.append("perm /\t.*\t.*\t.*")
        if stdin is not None and broker.users.get("openstack") == stdin.decode().rstrip("\n"):
            out.append("auth-ok")
        return 0, "\n".join(out) + "\n"

    def set_password(h, m, stdin):
        broker.users[m.group(1)] = stdin.decode().rstrip("\n")
        return 0, ""

    def set_perms(h, m, stdin):
        broker.perms.add(m.group(1))
        return 0, ""

    def delete(h, m, stdin):
        broker.users.pop(m.group(1), None)
        return 0, ""

    host.on(r"list_users", state)
    host.on(r"rabbitmqctl (?:add_user|change_password) (\S+)$", set_password)
    host.on(r"rabbitmqctl set_permissions (\S+) '\.\*' '\.\*' '\.\*'$", set_perms)
    host.on(r"rabbitmqctl delete_user (\S+)$", delete)
    return host


def _run(host: FakeHost, tmp_path, password: str = PASSWORD) -> Status:
    prof = Profile(name="t")
    prof.host.address = "10.0.0.5"
    ctx = host.ctx(prof, secrets={"rabbit_password": password},
                   state_path=tmp_path / "state.json")
    plan = Plan(rabbitmq.phases(prof, PLATFORMS["debian-13"]), platform="debian-13")
    got = []
    Engine(plan, ctx, listeners=[lambda ev: got.append(ev)]).run()
    return [ev.status for ev in got if type(ev).__name__ == "StepFinished"][-1]


def test_fresh_broker_gets_openstack_and_loses_guest_then_rerun_is_done(tmp_path):
    broker = Broker()
    host = _host(broker)
    assert _run(host, tmp_path) == Status.DONE
    assert broker.users == {"openstack": PASSWORD} and broker.perms == {"openstack"}
    assert not any(PASSWORD in c for c in host.commands)       # on stdin only, never in argv

    mark = host.mark()
    assert _run(host, tmp_path) == Status.ALREADY_DONE
    commands, writes = host.since(mark)
    assert writes == [] and len(commands) == 2                 # service state, broker state
    assert not any(w in c for c in commands for w in ("add_user", "change_password",
                                                        "set_permissions", "delete_user"))


def test_a_new_password_is_set_without_recreating_the_user(tmp_path):
    broker = Broker(users={"openstack": "old"}, perms={"openstack"})
    host = _host(broker)
    assert _run(host, tmp_path) == Status.DONE
    assert broker.users == {"openstack": PASSWORD}
    assert not any("add_user" in c for c in host.commands)
    assert any(c.endswith("change_password openstack") for c in host.commands)
