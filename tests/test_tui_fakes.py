"""Fakes for the TUI's Pilot and snapshot tests (no SSH): a runner that drives the REAL
engine with fake steps, and a fake transport for "Test connection".

Only the unit/Pilot/snapshot tests use these; the end-to-end test does not.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from types import SimpleNamespace

from tui.tasks import engine as e
from tui.tasks.redact import Redactor

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
PROBE_OUT = (OS_RELEASE + "@@STK@@\n4\n Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n@@STK@@\n"
             "MemTotal:        8140000 kB\n@@STK@@\n/dev/sda1 41152736 3000000 36000000 8% /\n"
             "@@STK@@\n0\n")
FINGERPRINT = "SHA256:Q0hBTkdFTUVub3RhcmVhbGtleWZpbmdlcnByaW50eHg"


def clock() -> float:
    """A clock that never moves: no elapsed time in snapshots."""
    return 1000.0


class FakeTransport:
    """Stands in for tui.tasks.transport.Transport on the Host screen."""

    instances: list["FakeTransport"] = []

    def __init__(self, address, port=22, user="root", *, key_file=None, password=None,
                 sudo_password=None, confirm_host_key=None, connect_timeout=10.0,
                 known=False, stdout=PROBE_OUT, changed=False, fail=None):
        self.address, self.port, self.user = address, port, user
        self.confirm_host_key = confirm_host_key
        self.known, self.stdout, self.changed, self.fail = known, stdout, changed, fail
        self.connected = False
        self.sudo_mode = None
        self.ran: list[str] = []
        FakeTransport.instances.append(self)

    def connect(self):
        from tui.tasks.transport import HostKeyChanged, UnknownHostKey

        if self.fail is not None:
            raise self.fail
        if self.changed:
            raise HostKeyChanged(self.address, "ssh-ed25519", FINGERPRINT,
                                 ["ssh-ed25519 SHA256:b2xkb2xkb2xkb2xkb2xkb2xkb2xk"])
        if not self.known:
            ok = bool(self.confirm_host_key and self.confirm_host_key(
                self.address, "ssh-ed25519", FINGERPRINT))
            if not ok:
                raise UnknownHostKey(self.address, "ssh-ed25519", FINGERPRINT)
        self.connected = True
        self.sudo_mode = "root"
        return self

    def run(self, command, **kw):
        self.ran.append(command)
        return SimpleNamespace(status=0, stdout=self.stdout, stderr="", lines=[])

    def close(self):
        self.connected = False


def transport_factory(**opts):
    def make(*args, **kwargs):
        return FakeTransport(*args, **{**kwargs, **opts})
    return make


# -- plans and steps ----------------------------------------------------------------------
def ok_step(sid, title, lines=(), phase=""):
    def run(ctx):
        for line in lines:
            ctx.output(line)
    return e.Step(sid, title, run=run, detail=f"runs {sid}", phase=phase)


def small_plan(extra=None) -> e.Plan:
    """A short plan with real phase names, for pilot tests and snapshots."""
    phases = [
        e.Phase("preflight", "Preflight checks", [
            ok_step("preflight.checks", "Check the host can take the install",
                    ["ok       Distribution and release: Debian 13", "ok       Memory: 7.8 GiB"]),
        ]),
        e.Phase("prepare", "Prepare the host", [
            ok_step("prepare.detect", "Detect the distribution and release", ["debian-13"]),
            ok_step("prepare.packages", "Install the packages (one transaction)",
                    [f"Setting up package-{i} (1.{i}) ..." for i in range(6)]),
        ]),
        e.Phase("mariadb", "MariaDB", [
            ok_step("mariadb.config", "OpenStack settings for MariaDB",
                    ["--- /etc/mysql/mariadb.conf.d/99-openstack.cnf", "+bind-address = 10.0.0.2"]),
            ok_step("mariadb.service", "Start and enable MariaDB"),
        ]),
        e.Phase("keystone", "Keystone (identity)", [
            ok_step("keystone.config", "keystone.conf: database, fernet tokens, memcache"),
            ok_step("keystone.bootstrap", "Bootstrap admin user, role and identity endpoints"),
        ]),
        e.Phase("finish", "Finish and verify", [
            ok_step("finish.openrc", "admin-openrc.sh, demo-openrc.sh and clouds.yaml"),
            ok_step("finish.verify", "Verify: tokens, catalog, image active"),
        ]),
    ]
    plan = e.Plan(phases, platform="debian-13")
    for step in plan.steps():
        step.phase = plan.phase_of(step.id).id
    return plan


FACTS = {
    "local_files": "~/.local/share/stack-tui/clouds/lab",
    "verification": [["token as admin", True, ""], ["token as demo", True, ""],
                     ["catalog has identity", True, "identity, image"],
                     ["catalog has image", True, ""], ["image cirros active", True, "1 active of 1"]],
}


class FakeRunner:
    """The runner interface of tui.app.LiveRunner, driving the real Engine with fake steps.

    Durations are pinned (``duration``) so snapshots never show a measured time."""

    def __init__(self, profile, secrets, *, plan=None, host_key=False, facts=None,
                 duration=1.5, connect_error=None, state_dir=None):
        self.profile, self.secrets = profile, secrets
        self.plan = plan or small_plan()
        self.host_key = host_key
        self.facts = FACTS if facts is None else facts
        self.duration = duration
        self.connect_error = connect_error
        self.engine = None
        self.connects = 0
        self.events: list = []
        self.decisions: list = []
        self._state = None
        self.log_path = None

    def connect(self, confirm_host_key):
        from tui.tasks.transport import UnknownHostKey

        self.connects += 1
        if self.connect_error is not None:
            raise self.connect_error
        if self.host_key:
            if not confirm_host_key(self.profile.host.address, "ssh-ed25519", FINGERPRINT):
                raise UnknownHostKey(self.profile.host.address, "ssh-ed25519", FINGERPRINT)
        return self.plan

    def make_engine(self, listeners, decide):
        redact = Redactor(self.secrets.values.values())
        path = e.state_path(self.profile.name, self.profile.host.address)
        self._state = e.RunState.load(path, redact)
        ctx = e.Context(None, self.profile, self.secrets, redact, self._state)
        self._state.facts.update(self.facts)
        from tui.tasks import paths
        self.log_path = paths.log_dir() / f"{self.profile.name}.log"
        transcript = self._transcript = e.Transcript(self.log_path, redact)

        def pin(ev):
            self.events.append(ev)
            if self.duration is not None and isinstance(ev, (e.StepFinished, e.RunFinished)):
                ev = dataclasses.replace(ev, duration=self.duration * (
                    1 if isinstance(ev, e.StepFinished) else 60))
            transcript(ev)
            for listener in listeners:
                listener(ev)

        def decide_and_record(step, info):
            d = decide(step, info)
            self.decisions.append((step.id, d))
            return d

        others = {h: e.Context(None, self.profile, self.secrets, redact, self._state)
                  for h in self.plan.hosts() if h}     # several hosts: one context each
        self.engine = e.Engine(self.plan, ctx, listeners=[pin], decide=decide_and_record,
                               contexts=others)
        return self.engine

    @property
    def state(self):
        return self._state

    def close(self):
        t = getattr(self, "_transcript", None)
        if t is not None:
            t.close()
            self._transcript = None


def runner_factory(**opts):
    made: list[FakeRunner] = []

    def make(profile, secrets):
        r = FakeRunner(profile, secrets, **opts)
        made.append(r)
        return r

    make.made = made  # type: ignore[attr-defined]
    return make


def fail_first(plan: e.Plan, step_id: str, times: int = 1) -> dict:
    """Make ``step_id`` raise StepError the first ``times`` runs; returns a call counter."""
    step = plan.find(step_id)
    counter = {"calls": 0}
    inner = step.run

    def run(ctx):
        counter["calls"] += 1
        if counter["calls"] <= times:
            ctx.output("E: Unable to locate package glance-apii")
            raise e.StepError("The package install failed.",
                              "apt-get could not find a package",
                              "check the package repository, then Retry",
                              tail=["Reading package lists...", "E: Unable to locate package "
                                    "glance-apii"])
        inner(ctx)

    step.run = run
    return counter


def block_step(plan: e.Plan, step_id: str, lines=(), apt: bool = False) -> threading.Event:
    """Make ``step_id`` print ``lines`` then wait until released (or cancelled); with
    ``apt``, the lines go through the packages step's progress parser too."""
    step = plan.find(step_id)
    release = threading.Event()

    def run(ctx):
        from tui.tasks.services.prepare import AptProgress

        watch = AptProgress(ctx).feed if apt else (lambda line: None)
        for line in lines:
            ctx.output(line)
            watch(line)
        while not release.is_set():
            if ctx.cancel.wait(0.05):
                from tui.tasks.transport import CommandCancelled

                raise CommandCancelled(f"Cancelled: {step_id}")

    step.run = run
    return release


# -- homes, profiles, waiting ---------------------------------------------------------------
def setup_home(monkeypatch, tmp_path) -> Path:
    """STACK_TUI_HOME and HOME in a temp dir; ~/.ssh/id_ed25519 and ~/cirros.img exist."""
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "stack-home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(__import__("os").environ):
        if name.startswith("STACK_TUI_") and name not in ("STACK_TUI_HOME", "STACK_TUI_CACHE_DIR"):
            monkeypatch.delenv(name)
    ssh = tmp_path / ".ssh"
    ssh.mkdir(exist_ok=True)
    (ssh / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n")
    (ssh / "id_ed25519").chmod(0o600)
    (tmp_path / "cirros.img").write_bytes(b"QFI\xfb" + b"\0" * 1020)
    return tmp_path


def save_profile(name="lab", address="10.0.0.2", **host):
    from tui.tasks import profile as pr

    p = pr.Profile(name=name)
    p.host.address = address
    p.host.key_file = host.get("key_file", "~/.ssh/id_ed25519")
    p.host.user = host.get("user", "root")
    p.image.file = "~/cirros.img"
    pr.save(p)
    return p


def unfinished_state(profile, done=("preflight.checks", "prepare.detect"),
                     failed="prepare.packages"):
    """A saved run that stopped: a few steps done, one failed."""
    st = e.RunState(e.state_path(profile.name, profile.host.address))
    st.started = 1.0
    for sid in done:
        st.steps[sid] = {"status": "done", "duration": 1.0}
    if failed:
        st.steps[failed] = {"status": "failed", "duration": 2.0}
    st.save()
    return st


async def wait_for(pilot, cond, timeout: float = 10.0, what: str = "condition"):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {what}")


def make_test_app(**kwargs):
    from tui.app import make_app

    kwargs.setdefault("clock", clock)
    kwargs.setdefault("blink", False)
    kwargs.setdefault("animations", False)
    kwargs.setdefault("transport_factory", transport_factory())
    kwargs.setdefault("runner_factory", runner_factory())
    profile = kwargs.pop("profile", None)
    return make_app(profile, **kwargs)


def screen_name(app) -> str:
    return type(app.screen).__name__
