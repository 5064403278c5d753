"""A tiny TOML writer for our own flat profile/secrets/state documents.

Reading uses the standard library's tomllib.  Our documents are tables of
strings, numbers, booleans and lists of strings, so a writer is a few lines;
JSON string escaping is valid TOML basic-string escaping.
"""

from __future__ import annotations

import json


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps(data: dict) -> str:
    lines: list[str] = []
    tables = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in table.items():
            if value is None:
                continue
            if isinstance(value, dict):
                raise TypeError("nested tables are not supported")
            lines.append(f"{key} = {_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
