"""One error shape: every stack-tui error carries what / why / hint / tail from one base."""

from __future__ import annotations

import pytest

from tui.tasks import engine, platforms, profile, secrets, tempest
from tui.tasks.errors import Explained, Failure
from tui.tasks.sandbox.base import SandboxError
from tui.tasks.transport import CommandTimeout, ConnectError, TransportError, timed_out


@pytest.mark.parametrize("cls", [engine.StepError, TransportError, ConnectError, CommandTimeout,
                                 platforms.UnknownPlatform, profile.ProfileError,
                                 engine.StateError, SandboxError, tempest.TempestError,
                                 secrets.SecretError])
def test_every_error_derives_from_the_one_base(cls):
    assert issubclass(cls, Failure) and issubclass(cls, Explained)


def test_error_info_is_the_same_shape_as_a_record():
    info = engine.ErrorInfo("What.", "why", "hint", ["t"])
    assert isinstance(info, Explained) and not isinstance(info, Exception)
    assert info.text() == "What.\nWhy: why\nTry: hint"


def test_each_keeps_its_words_and_its_old_str():
    step = engine.StepError("Step failed.", "because", "retry", ["out"], transient=True)
    assert (step.what, step.why, step.hint, step.tail, step.transient) == (
        "Step failed.", "because", "retry", ["out"], True)
    assert str(step) == "Step failed."
    t = TransportError("No route.", "down", "check it")
    assert str(t) == t.text() == t.message() == "No route.\nWhy: down\nTry: check it"
    u = platforms.UnknownPlatform("Unsupported system: X.", "we support Y", "use Y")
    assert str(u) == "Unsupported system: X. we support Y; use Y" and u.hint == "use Y"
    assert isinstance(u, ValueError)
    p = profile.ProfileError("bad value", file="a.toml", key="host.port")
    assert str(p) == p.what == "a.toml: [host.port] bad value" and p.reason == "bad value"
    s = SandboxError("no root")
    assert isinstance(s, RuntimeError) and s.what == str(s) == "no root" and s.tail == []
    to = timed_out("sleep 9", 3, ["x"])
    assert isinstance(to, Failure) and to.tail
