"""What one preflight check found: ok / warning / blocking, why, and a fix where one exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..engine import Context

OK, WARNING, BLOCKING = "ok", "warning", "blocking"
GiB = 1024 ** 3


@dataclass
class Result:
    id: str
    level: str                  # ok | warning | blocking
    title: str
    why: str                    # one sentence
    fix: Callable[[Context], None] | None = None   # stack-tui can repair it
    fix_hint: str = ""          # what the fix does, or what the user should do

    @property
    def blocking(self) -> bool:
        return self.level == BLOCKING

    def lines(self) -> list[str]:
        out = [f"{self.level.upper() if self.level != OK else 'ok':8s} {self.title}: {self.why}"]
        if self.level != OK and self.fix_hint:
            out.append(f"{'':8s} fix: {self.fix_hint}"
                       + (" [stack-tui can do this: --fix]" if self.fix else ""))
        return out

    def to_dict(self) -> dict:
        return {"id": self.id, "level": self.level, "title": self.title, "why": self.why,
                "fix": self.fix_hint, "fixable": self.fix is not None}


def _fmt_gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"
