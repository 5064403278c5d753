"""Every look at the host in glance's image step has a time limit: the log tail read when
an upload ends up not active is bounded by services.common.LOOK, not ctx.sh's 900 s."""

from __future__ import annotations

import ast
import inspect

from tests.fakehost import FakeHost
from tui.tasks.profile import Profile
from tui.tasks.services import common, glance


def test_glance_log_tail_has_the_look_limit(tmp_path):
    host = FakeHost().on(r"^tail -n 20 /var/log/glance/glance-api.log$", (0, "a\nb\n"))
    seen = {}
    run = host.run

    def spy(command, **kw):
        seen[command] = kw.get("timeout")
        return run(command, **kw)

    host.run = spy
    ctx = host.ctx(Profile(name="t"), state_path=tmp_path / "s.json")
    assert glance.glance_log_tail(ctx) == ["a", "b"]
    assert seen == {"tail -n 20 /var/log/glance/glance-api.log": common.LOOK}


def test_every_ctx_sh_in_glance_names_a_timeout():
    tree = ast.parse(inspect.getsource(glance))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "sh"]
    assert calls
    missing = [n.lineno for n in calls if not any(k.arg == "timeout" for k in n.keywords)]
    assert missing == [], f"ctx.sh without a timeout at lines {missing}"
