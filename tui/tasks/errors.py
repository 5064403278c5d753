"""One shape for every failure stack-tui explains: what failed, why (the likely cause),
a hint (what to try) and the tail (the last output lines that show it).

``Explained`` is that shape; ``Failure`` is the exception base every stack-tui error
derives from (StepError, TransportError, UnknownPlatform, ProfileError, StateError,
SandboxError, ...), and engine.ErrorInfo is the same shape as a record kept in the run
state.  A leaf module: it imports nothing of the project."""

from __future__ import annotations


class Explained:
    """what / why / hint / tail, and the text people read."""

    what: str = ""
    why: str = ""
    hint: str = ""
    tail: list[str]

    def text(self) -> str:
        out = [self.what]
        if self.why:
            out.append(f"Why: {self.why}")
        if self.hint:
            out.append(f"Try: {self.hint}")
        return "\n".join(out)


class Failure(Explained, Exception):
    """A stack-tui error.  ``str()`` is ``what`` unless a subclass says more (_message)."""

    def __init__(self, what: str = "", why: str = "", hint: str = "",
                 tail: list[str] | None = None):
        self.what, self.why, self.hint = what, why, hint
        self.tail = list(tail or [])
        super().__init__(self._message())

    def _message(self) -> str:
        return self.what
