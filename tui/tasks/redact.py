"""Masking every known secret, in every form it may take in text, and stripping terminal
control sequences from text that came from elsewhere (a leaf module)."""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse

MASK = "********"
# Forms shorter than this are masked only where they stand as a value (after `=` or `:`,
# in quotes, before `@` in a URL): masking a one-letter password everywhere would mask
# every such letter of the log.
_SHORT = 3
# ESC-introduced sequences (CSI ... final byte, OSC/DCS/APC/PM/SOS ... BEL or ST, two-byte
# escapes), then any other C0/C1 control character but tab and newline.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
                      r"|\x1b[ -/]*[0-~]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # + bidi overrides


def strip_controls(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (tab and newline
    kept; a carriage return ends nothing: it is dropped), so remote output or a hostile
    name can neither move the cursor, recolour, retitle the terminal nor hide a line."""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


class Redactor:
    """Replaces every known secret (and its quoted/encoded forms) by a mask."""

    def __init__(self, values=()):
        self._values: set[str] = set()
        self._short: set[str] = set()
        self._ordered: list[str] = []
        self._short_re: re.Pattern | None = None
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if not value:
            return
        forms = {
            value,
            shlex.quote(value),
            urllib.parse.quote(value, safe=""),
            urllib.parse.quote_plus(value, safe=""),
            urllib.parse.quote(value),
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            repr(value)[1:-1],
            value.replace("$", "$$"),  # oslo.config escaping
            value.replace("%", "%25").replace("@", "%40"),  # minimal URL quoting
            value.replace("%", "%25").replace("@", "%40").replace("$", "$$"),
        }
        self._values.update(f for f in forms if len(f) >= _SHORT)
        self._short.update(f for f in forms if 0 < len(f) < _SHORT)
        self._ordered = sorted(self._values, key=len, reverse=True)
        if self._short:
            alts = "|".join(re.escape(f) for f in sorted(self._short, key=len, reverse=True))
            # as a value: after `=` (ini, shell, env), in quotes after `:` (JSON, YAML), as
            # a URL's password (`://user:VALUE@`) or after `--...password`; up to a quote, a
            # separator, `@` or the end of the line.  Never a bare number after `:`, which
            # would break the JSON of the run state.
            self._short_re = re.compile(
                r"(?P<head>=[ \t]*[\"']?|:[ \t]*[\"']|://[^\s:/@]*:|--[\w-]*password[ =][\"']?)"
                r"(?:" + alts + r")(?=[\"']?(?:[\s,;&@)\]}]|$))", re.M)

    def __call__(self, text):
        return self.redact(text)

    def redact(self, text):
        if text is None or not (self._values or self._short):
            return text
        if isinstance(text, bytes):
            return self.redact(text.decode("utf-8", "replace"))
        if not isinstance(text, str):
            text = str(text)
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        if self._short_re is not None:
            text = self._short_re.sub(lambda m: m.group("head") + MASK, text)
        return text

    def __contains__(self, value: str) -> bool:
        return value in self._values or value in self._short
