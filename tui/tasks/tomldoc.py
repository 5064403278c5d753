"""Writing our TOML documents (profiles, secrets files) without losing what a person wrote.

tomlkit edits a parsed document in place: comments, blank lines, key order and
quoting the user chose survive; only values that changed are rewritten.  Reading
for use still goes through the standard library's tomllib.
"""

from __future__ import annotations

import re


def merge(old_text: str | None, data: dict, header: str = "") -> str:
    """``data`` (top-level keys, tables and arrays of tables) written into ``old_text``.

    A key whose value is None is removed; a top-level key or table not in ``data``
    is removed; everything else in the old document (comments included) is kept.  An
    array of tables is edited entry by entry (the Nth entry's comments stay with it)."""
    import tomlkit

    doc = tomlkit.parse(old_text) if old_text and old_text.strip() else tomlkit.document()
    if not (old_text and old_text.strip()) and header:
        doc.add(tomlkit.comment(header.lstrip("# ").rstrip("\n")))
    for key in [k for k in doc if k not in data or data[k] is None]:
        del doc[key]
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            table = doc.get(key)
            if not isinstance(table, dict):
                if key in doc:
                    del doc[key]
                table = tomlkit.table()
                doc[key] = table
            _merge_table(table, value)
        elif _is_table_list(value):
            _merge_tables(doc, key, value)
        elif key not in doc or _plain(doc[key]) != _plain(value):
            doc[key] = value
    text = tomlkit.dumps(doc)
    return text if text.endswith("\n") else text + "\n"


def _merge_table(table, value: dict) -> None:
    for k in [k for k in table if k not in value or value[k] is None]:
        del table[k]
    for k, v in value.items():
        if v is not None and (k not in table or _plain(table[k]) != _plain(v)):
            table[k] = v


def _is_table_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _merge_tables(doc, key: str, value: list[dict]) -> None:
    """``[[key]]`` entries: the old ones edited in place, extra ones appended or dropped."""
    import tomlkit
    from tomlkit.items import AoT

    aot = doc.get(key)
    fresh = not isinstance(aot, AoT)
    if fresh:
        if key in doc:
            del doc[key]
        aot = tomlkit.aot()
        if len(doc.body):  # a blank line before the first entry, as before a [table]
            doc.add(tomlkit.nl())
        doc[key] = aot
    while len(aot) > len(value):
        del aot[len(aot) - 1]
    for i, entry in enumerate(value):
        if i < len(aot):
            _merge_table(aot[i], entry)
        else:
            table = tomlkit.table()
            _merge_table(table, entry)
            if not fresh:  # a blank line before what follows, as between the old entries
                table.add(tomlkit.nl())
            aot.append(table)


def _plain(value):
    unwrap = getattr(value, "unwrap", None)
    value = unwrap() if unwrap else value
    return list(value) if isinstance(value, tuple) else value


def where_in(raw: bytes, pos: int) -> str:
    """'(line N, in KEY)' for a byte offset of a TOML file, to point at a bad value."""
    line_no = raw.count(b"\n", 0, pos) + 1
    start = raw.rfind(b"\n", 0, pos) + 1
    m = re.match(rb"\s*([A-Za-z0-9_.-]+)\s*=", raw[start:pos])
    if not m:
        return f"(line {line_no})"
    tables = re.findall(rb"^[ \t]*\[([A-Za-z0-9_.-]+)\][ \t]*$", raw[:start], re.M)
    key = (tables[-1] + b"." if tables else b"") + m.group(1)
    return f"(line {line_no}, in {key.decode()})"
