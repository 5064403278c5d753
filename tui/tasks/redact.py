"""Masking every known secret, in every form it may take in text (a leaf module)."""

from __future__ import annotations

import json
import shlex
import urllib.parse

MASK = "********"


class Redactor:
    """Replaces every known secret (and its quoted/encoded forms) by a mask."""

    def __init__(self, values=()):
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if not value or len(value) < 3:
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
        self._values.update(f for f in forms if len(f) >= 3)
        self._ordered = sorted(self._values, key=len, reverse=True)

    def __call__(self, text):
        return self.redact(text)

    def redact(self, text):
        if text is None or not self._values:
            return text
        if isinstance(text, bytes):
            return self.redact(text.decode("utf-8", "replace"))
        if not isinstance(text, str):
            text = str(text)
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __contains__(self, value: str) -> bool:
        return value in self._values
