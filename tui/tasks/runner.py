"""Glue shared by the headless CLI and the TUI: one run of the engine for a profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import deploy, platforms
from .engine import Context, Decision, Engine, Plan, RunState, Transcript, new_log_path, state_path
from .platforms import PLATFORMS
from .profile import Profile, load_secrets
from .redact import Redactor
from .secrets import Secrets
from .transport import Transport


@dataclass
class Session:
    profile: Profile
    secrets: Secrets
    redact: Redactor
    transport: Transport
    state: RunState
    log_path: Path
    plan: Plan | None = None
    transcript: Transcript | None = None
    generated: list[str] = field(default_factory=list)
    # several hosts: every host but the controller, its own connection (host name -> Transport)
    others: dict[str, Transport] = field(default_factory=dict)

    def close(self) -> None:
        if self.transcript is not None:
            self.transcript.close()
        self.transport.close()
        for t in self.others.values():
            t.close()

    def transports(self) -> dict[str, Transport]:
        """Every host's connection by host name ("" the controller's)."""
        return {"": self.transport, **self.others}


def prepare_secrets(profile: Profile) -> tuple[Secrets, list[str]]:
    secrets = load_secrets(profile)
    made = secrets.ensure(profile.needed_secrets())
    return secrets, made


def open_session(
    profile: Profile,
    *,
    accept_new_host_key: bool = False,
    confirm_host_key: Callable[[str, str, str], bool] | None = None,
    secrets: Secrets | None = None,
    reset_state: bool = False,
) -> Session:
    """Secrets (generated and saved when missing), redactor, transport (not yet connected).

    Every install, check and TUI run starts here.  With several hosts each gets its own
    connection (``Session.others``); the run state is the controller's, and records every
    host's steps and facts."""
    made: list[str] = []
    if secrets is None:
        secrets, made = prepare_secrets(profile)
    redact = secrets.redactor()

    def transport_to(host) -> Transport:
        return Transport(
            host.address, host.port, host.user,
            key_file=host.key_file, password=secrets.get("ssh_password"),
            sudo_password=secrets.get("sudo_password"), redactor=redact,
            accept_new_host_key=accept_new_host_key, confirm_host_key=confirm_host_key,
        )

    transport = transport_to(profile.host)
    others = {h.name: transport_to(h) for h in profile.hosts if h is not profile.host}
    spath = state_path(profile.name, profile.host.address)
    if reset_state and spath.exists():
        spath.unlink()
    state = RunState.load(spath, redact)
    return Session(profile, secrets, redact, transport, state, new_log_path(profile.name),
                   generated=made, others=others)


def connect_and_plan(session: Session) -> Plan:
    """Connect (host key checks happen here), detect the platform, build the plan."""
    session.transport.connect()
    for t in session.others.values():   # one after the other: a host key may be asked about
        t.connect()
    forced = session.profile.openstack.platform
    text = None if forced != "auto" else session.transport.read_file("/etc/os-release") or ""
    try:
        plat = platforms.resolve(forced, text)
    except platforms.UnknownPlatform:
        # No silent default: the plan is the preflight alone, whose platform check blocks
        # and names the system (and what is supported) through the normal failure path.
        session.plan = deploy.unsupported_plan()
        return session.plan
    if forced == "auto":
        _same_system(session, plat)
    session.plan = deploy.build_plan(session.profile, plat.id)
    return session.plan


def make_engine(
    session: Session,
    *,
    listeners: list[Callable[[Any], None]] | None = None,
    decide: Callable | None = None,
    from_step: str | None = None,
    only_phase: str | None = None,
    fix: bool = False,
) -> Engine:
    assert session.plan is not None, "connect_and_plan first"
    if session.transcript is None:
        session.transcript = Transcript(session.log_path, session.redact)
    ctx = Context(session.transport, session.profile, session.secrets, session.redact,
                  session.state)
    ctx.options["fix"] = fix  # preflight applies its fixes (--fix)
    contexts = {}
    for name, transport in session.others.items():
        other = Context(transport, session.profile.on(name), session.secrets, session.redact,
                        session.state)
        other.facts = session.state.host_facts(name)
        other.controller_facts = session.state.facts
        other.options["fix"] = fix
        contexts[name] = other
    return Engine(session.plan, ctx, listeners=[session.transcript, *(listeners or [])],
                  decide=decide or (lambda step, err: Decision.ABORT),
                  from_step=from_step, only_phase=only_phase, contexts=contexts)


def _same_system(session: Session, plat) -> None:
    """Every host runs the controller's system: one plan, one OpenStack release."""
    from .errors import Failure

    for name, t in session.others.items():
        try:
            theirs = platforms.resolve("auto", t.read_file("/etc/os-release") or "")
        except platforms.UnknownPlatform:
            theirs = None
        if theirs is None or theirs.id != plat.id:
            raise Failure(
                f"Host {name} runs {theirs.name if theirs else 'a system stack-tui does not support'}"
                f", the controller {plat.name}.",
                "every host of one cloud gets the same OpenStack release from the same system",
                f"install {plat.name} on {name}, or set [openstack] platform when you know "
                "better")


def platform_name(pid: str) -> str:
    return PLATFORMS[pid].name if pid in PLATFORMS else pid
