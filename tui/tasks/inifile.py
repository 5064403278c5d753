"""Edit INI-style config files, changing only the keys we own.

Comments, ordering, blank lines and every key we do not own are kept.  A key
we set replaces its active line in the section; when absent it goes right
after a commented-out default (``#key = ...``) if the section has one, else
at the end of the section.  Missing sections are appended.
"""

from __future__ import annotations

import difflib
import re

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*[=:]")
_COMMENTED = re.compile(r"^\s*[#;]\s*([A-Za-z0-9_.\-]+)\s*=")


def oslo_value(value: str) -> str:
    """Quote a value for oslo.config: ``$`` interpolates, outer quotes are stripped."""
    value = value.replace("$", "$$")
    if value != value.strip() or (value and value[0] in "'\"" and value[0] == value[-1]) or (
        value and value[0] in "'\"" and len(value) == 1
    ):
        value = '"' + value + '"'
    return value


class UnsafeValue(ValueError):
    """A setting that would not stay one line of the file (the value is never quoted in the
    message: it may be a password)."""


def check_line(where: str, *parts: str | None) -> None:
    """Refuse text with a line break (or any control character but tab) meant for one line
    of a config file: it would add lines of its own.  The last line of defence; profile and
    secrets validation refuse such values long before."""
    for part in parts:
        if part is not None and any((ord(c) < 32 and c != "\t") or c in "\x7f\x85\u2028\u2029"
                                    for c in part):
            raise UnsafeValue(f"refusing to write {where}: the value holds a line break or "
                              "control character, which would add lines to the file")


def set_values(text: str, settings: dict[tuple[str, str], str | None]) -> str:
    """Return ``text`` with each (section, key) set to value (None removes it)."""
    for (section, key), value in settings.items():
        check_line(f"[{section[:40]}] {key[:40]}".encode("unicode_escape").decode(),
                   section, key, value)
    lines = text.splitlines()
    for (section, key), value in settings.items():
        lines = _set_one(lines, section, key, value)
    out = "\n".join(lines)
    return out + "\n" if out else out


def _sections(lines: list[str]) -> dict[str, tuple[int, int]]:
    """section -> (header index, end index exclusive); DEFAULT before any header is -1."""
    spans: dict[str, tuple[int, int]] = {}
    current, start = None, -1
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            if current is not None and current not in spans:
                spans[current] = (start, i)
            current, start = m.group(1).strip(), i
    if current is not None and current not in spans:
        spans[current] = (start, len(lines))
    return spans


def _set_one(lines: list[str], section: str, key: str, value: str | None) -> list[str]:
    lines = list(lines)
    spans = _sections(lines)
    if section not in spans:
        if value is None:
            return lines
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", f"{key} = {value}"]
        return lines
    head, end = spans[section]
    found = None
    commented = None
    for i in range(head + 1, end):
        m = _KEY.match(lines[i])
        if m and m.group(1) == key:
            found = i
            break
        c = _COMMENTED.match(lines[i])
        if c and c.group(1) == key and commented is None:
            commented = i
    if found is not None:
        if value is None:
            del lines[found]
        else:
            lines[found] = f"{key} = {value}"
        return lines
    if value is None:
        return lines
    if commented is not None:
        lines.insert(commented + 1, f"{key} = {value}")
        return lines
    # end of the section, before trailing blank lines
    pos = end
    while pos - 1 > head and not lines[pos - 1].strip():
        pos -= 1
    lines.insert(pos, f"{key} = {value}")
    return lines


def get_value(text: str, section: str, key: str) -> str | None:
    lines = text.splitlines()
    spans = _sections(lines)
    if section not in spans:
        return None
    head, end = spans[section]
    for i in range(head + 1, end):
        m = _KEY.match(lines[i])
        if m and m.group(1) == key:
            return lines[i].split("=", 1)[1].strip() if "=" in lines[i] else ""
    return None


def diff(old: str, new: str, name: str, redact=lambda s: s) -> list[str]:
    return [
        redact(line.rstrip("\n"))
        for line in difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{name} (before)", f"{name} (after)", lineterm="", n=1
        )
    ]


def one_line(path: str, settings: dict[tuple[str, str], str | None]) -> dict:
    """``settings`` unchanged once every value is known to stay one line of ``path``;
    else UnsafeValue naming the file, section and key."""
    for (section, key), value in settings.items():
        check_line(f"[{section}] {key} in {path}".encode("unicode_escape").decode(), value)
    return settings
