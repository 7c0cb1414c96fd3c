"""One place that turns rows into table, JSON, CSV or YAML for every command.

Rows are plain mappings whose keys are the documented JSON fields. A table
shows the ``columns`` chosen by the command; JSON, CSV and YAML carry every
field. Tables have no colour when the output is not a terminal.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

FORMATS = ("table", "json", "csv", "yaml")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(data: Any) -> str:
    return json.dumps(_plain(data), indent=2, ensure_ascii=False, default=str)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def printable(text: str) -> str:
    """Control and format characters (ESC, CR, bidi overrides) shown escaped: names never drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[str],
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(to_json(list(rows)) + "\n")
    elif fmt == "yaml":
        import yaml

        out.write(yaml.safe_dump(_plain(list(rows)), sort_keys=False, allow_unicode=True))
    elif fmt == "csv":
        fields = list(rows[0].keys()) if rows else list(columns)
        writer = csv.writer(out)
        writer.writerow(fields)
        for row in rows:
            writer.writerow([json.dumps(_plain(v)) if isinstance(v, (Mapping, list, tuple)) else _cell(v) for v in (row.get(f) for f in fields)])
    else:
        render_table(rows, columns, title=title, out=out)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None, out: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = out or sys.stdout
    is_tty = out.isatty()
    console = Console(file=out, no_color=not is_tty, highlight=False, width=None if is_tty else 250, soft_wrap=not is_tty)
    table = Table(title=title, box=None if not is_tty else None, show_edge=False, pad_edge=False, header_style="bold" if is_tty else "")
    for column in columns:
        table.add_column(column.upper().replace("_", " "), overflow="fold")
    for row in rows:
        # Text, not markup: "[red]" in a name is shown as written.
        table.add_row(*(Text(printable(_cell(row.get(c)))) for c in columns))
    console.print(table)


def render_document(data: Mapping[str, Any], fmt: str, *, out: TextIO | None = None) -> None:
    """One object (``hosts show``): nested sections as YAML-ish text for people, full JSON/YAML for tools."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(to_json(data) + "\n")
        return
    import yaml

    out.write(yaml.safe_dump(_plain(dict(data)), sort_keys=False, allow_unicode=True, default_flow_style=False))
