"""One place that turns rows into table, JSON, CSV or YAML for every command.

Rows are plain mappings whose keys are the documented JSON fields. A table
shows the ``columns`` chosen by the command (``-o wide``: more of them,
``--columns``: the ones asked for); JSON and YAML carry every field; CSV has
one fixed header per command (the command's ``fields``), rows or not.

Tables are for people and for ``awk``: an empty cell is ``<none>`` so that
column counts hold, piped output has no trailing padding and is never cut,
and on a terminal long cells are cut with an ellipsis to fit its width
(except with ``-o wide``), and
coloured unless ``NO_COLOR`` is set. Control characters in cells never reach
the terminal raw. Times are ISO 8601 with their UTC offset in every format.

What a source or a caller wrote (names, labels, log lines) can hold ESC, OSC and BEL sequences
and bidi overrides. JSON always writes every non-printable character as a ``\\uXXXX`` escape
(still the same JSON, valid when piped); CSV, YAML and ``show``/``impact``/``audit`` documents
on a terminal show them as visible escapes (``printable``); piped, CSV and YAML carry the data
as it is.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from inventory.errors import UsageError

EMPTY_CELL = "<none>"
COLUMN_GAP = "   "
ELLIPSIS = "…"
# A column is never cut narrower than this (or its header) to fit the terminal.
MIN_COLUMN_WIDTH = 8

# C0 and C1 control characters and DEL: an ESC in a container name must not recolour or move the terminal.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_STATUS_COLOURS = {
    "32": ("success", "ok", "running", "up", "ready", "active", "allow", "allowed", "approved", "executed", "healthy"),
    "33": ("partial", "locked", "pending", "unknown", "approval", "paused", "created", "starting"),
    "31": (
        "failed",
        "forbidden",
        "error",
        "down",
        "stopped",
        "exited",
        "deny",
        "denied",
        "rejected",
        "dead",
        "notready",
        "unhealthy",
    ),
}
_COLOUR_OF = {status: code for code, statuses in _STATUS_COLOURS.items() for status in statuses}


@dataclass(frozen=True)
class View:
    """How the user asked to see a list: which columns, whether headers, ids only, sorted by what.

    ``sort_by``: a field, ``-field`` for descending (the REST API's ``sort=-name``); empty values last either way.
    """

    columns: tuple[str, ...] = ()
    headers: bool = True
    ids_only: bool = False
    sort_by: str | None = None


# -o values beside the plain formats: kubectl's name, jsonpath=TEMPLATE and custom-columns=SPEC.
NAME_FORMAT = "name"
JSONPATH_PREFIX = "jsonpath="
CUSTOM_COLUMNS_PREFIX = "custom-columns="
# Formats that carry every field: --columns has nothing to choose there.
WHOLE_ROW_FORMATS = ("json", "yaml", NAME_FORMAT)


def sort_rows(rows: Sequence[Mapping[str, Any]], sort_by: str, known: Sequence[str]) -> list[Mapping[str, Any]]:
    """Rows by ``sort_by`` (``-field``: descending), empty values last, as kubectl puts them."""
    descending = sort_by.startswith("-")
    field = sort_by.removeprefix("-")
    _check_fields([field], known, "--sort-by")
    present = [row for row in rows if _sort_key(row.get(field))[0] < 2]
    empty = [row for row in rows if _sort_key(row.get(field))[0] == 2]
    return sorted(present, key=lambda row: _sort_key(row.get(field)), reverse=descending) + empty


def format_time(value: datetime) -> str:
    """The one time format: ISO 8601 to the second with the offset; naive times are UTC (as stored)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def printable(text: str) -> str:
    """Control and format characters (ESC, CR, bidi overrides) shown as escapes, never written raw to a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _ESCAPES.get(ch) or _escaped(ch) for ch in text)


def printable_lines(text: str) -> str:
    """Template output: its line breaks and tabs kept, every other control character escaped; ends with a newline."""
    lines = text.split("\n")
    shown = "\n".join("\t".join(printable(part) for part in line.split("\t")) for line in lines)
    return shown if shown.endswith("\n") else shown + "\n"


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _printable_deep(value: Any) -> Any:
    """``printable`` applied to every string of a JSON-like value, keys too."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {_printable_deep(k): _printable_deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable_deep(v) for v in value]
    return value


def _for(out: TextIO, value: Any) -> Any:
    """What goes to ``out``: with visible escapes on a terminal, as it is into a pipe or a file."""
    return _printable_deep(value) if out.isatty() else value


# Everything but printable ASCII and the newlines of indentation is looked at; the non-printable is escaped.
_JSON_SUSPECT = re.compile(r"[^\n -~]")


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # JSON spells characters beyond the BMP as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(data: Any) -> str:
    """Indented JSON with every non-printable character (C1 controls, DEL, bidi overrides) as ``\\uXXXX``.

    json.dumps escapes the C0 controls itself; outside strings there is only indentation, so the
    other escapes land inside strings and the document means exactly what it did."""
    return json_with_visible_escapes(json.dumps(_plain(data), indent=2, ensure_ascii=False, default=str))


def json_with_visible_escapes(text: str) -> str:
    """JSON text (from json.dumps) with its non-printable characters written as ``\\uXXXX``: the same JSON."""
    return _JSON_SUSPECT.sub(_json_escape, text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON and kubectl's tables write them, never Python's False
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


# One value of a change as the table shows it: a long label or attribute must not push the rest off the line.
CHANGED_VALUE_WIDTH = 40


def describe_diff(
    diff: Mapping[str, Any] | None,
    *,
    joined: Sequence[str] | None = None,
    left: Sequence[str] | None = None,
    cut: bool = False,
) -> str:
    """``field: old -> new`` for every changed field of a change's diff ({field: [old, new]}), in one cell.

    ``joined``/``left``: a service's members that came and went, by name (queries.member_moves), shown
    instead of the two lists of references. ``cut``: each value at most CHANGED_VALUE_WIDTH (a terminal's
    narrow table); piped and ``-o wide`` output is whole.
    """

    def short(value: Any) -> str:
        if value is None or value == "":
            return EMPTY_CELL
        text = json.dumps(_plain(value), separators=(",", ":")) if isinstance(value, (Mapping, list)) else _cell(value)
        return text if not cut or len(text) <= CHANGED_VALUE_WIDTH else text[: CHANGED_VALUE_WIDTH - 1] + ELLIPSIS

    parts = []
    # Sorted: PostgreSQL's JSONB does not keep the order the diff was written in.
    for name, values in sorted((diff or {}).items()):
        if name == "members" and joined is not None and left is not None:
            moved = [f"+{n}" for n in joined] + [f"-{n}" for n in left]
            parts.append(f"{name}: {' '.join(moved) or 'reordered'}")
        elif isinstance(values, (list, tuple)) and len(values) == 2:
            parts.append(f"{name}: {short(values[0])} -> {short(values[1])}")
        else:
            parts.append(f"{name}: {short(values)}")
    return "; ".join(parts)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None or value == "":
        return (2, "")  # empty last, as kubectl does
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, datetime):
        return (0, format_time(value))
    return (1, _cell(value).casefold())


def _check_fields(asked: Sequence[str], known: Sequence[str], option: str) -> None:
    unknown = [name for name in asked if name not in known]
    if unknown:
        raise UsageError(f"{option}: unknown field {', '.join(map(repr, unknown))} (fields: {', '.join(known)})")


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[str],
    *,
    wide: Sequence[str] = (),
    fields: Sequence[str] = (),
    view: View | None = None,
    title: str | None = None,
    out: TextIO | None = None,
    resource: str | None = None,
    typed_ids: bool = False,
    name_key: str = "name",
) -> None:
    """``columns``: the table; ``wide``: ``-o wide`` (default: ``columns``); ``fields``: every field, the CSV header.

    ``resource``: what the rows are (``host``), for ``-o name`` (``host/NAME``); ``typed_ids``: ``-q`` prints
    ``host/4``, an id no other type shares, which every command takes.
    """
    out = out or sys.stdout
    view = view or View()
    wide = wide or columns
    fields = fields or (list(rows[0].keys()) if rows else list(dict.fromkeys([*columns, *wide])))
    known = list(dict.fromkeys([*fields, *columns, *wide]))
    if view.sort_by:
        rows = sort_rows(rows, view.sort_by, known)
    if view.columns:
        _check_fields(view.columns, known, "--columns")
        if fmt in WHOLE_ROW_FORMATS or fmt.startswith((JSONPATH_PREFIX, CUSTOM_COLUMNS_PREFIX)):
            raise UsageError(f"--columns applies to tables and CSV; -o {fmt.partition('=')[0]} chooses its own fields")
    if view.ids_only:
        key = "id" if "id" in known else columns[0]
        for row in rows:
            value = printable(_cell(row.get(key)))
            out.write((f"{resource}/{value}" if typed_ids and key == "id" else value) + "\n")
    elif fmt == NAME_FORMAT:
        key = name_key if name_key in known else columns[0]
        for row in rows:
            out.write(f"{resource or 'object'}/{printable(_cell(row.get(key)))}\n")
    elif fmt.startswith(JSONPATH_PREFIX):
        from inventory.jsonpath import render_template

        text = render_template(fmt.removeprefix(JSONPATH_PREFIX), {"kind": "List", "items": _plain(list(rows))})
        out.write(printable_lines(text))
    elif fmt.startswith(CUSTOM_COLUMNS_PREFIX):
        from inventory.jsonpath import column_value, parse_custom_columns

        spec = parse_custom_columns(fmt.removeprefix(CUSTOM_COLUMNS_PREFIX))
        table = [{header: column_value(path, _plain(dict(row))) for header, path in spec} for row in rows]
        render_table(table, [header for header, _ in spec], out=out, headers=view.headers, as_given=True)
    elif fmt == "json":
        out.write(to_json(list(rows)) + "\n")
    elif fmt == "yaml":
        from inventory.yaml_text import dump_yaml

        out.write(dump_yaml(_for(out, _plain(list(rows))), sort_keys=False, allow_unicode=True))
    elif fmt == "csv":
        header = list(view.columns or fields)
        writer = csv.writer(out)
        if view.headers:
            writer.writerow(header)
        for row in rows:
            writer.writerow(
                _for(
                    out,
                    [
                        json.dumps(_plain(v)) if isinstance(v, (Mapping, list, tuple)) else _cell(v)
                        for v in (row.get(f) for f in header)
                    ],
                )
            )
    else:
        shown = view.columns or (wide if fmt == "wide" else columns)
        # -o wide asks for everything: never cut, even on a terminal (as kubectl's -o wide).
        render_table(rows, shown, title=title, out=out, headers=view.headers, fit=fmt != "wide")


def _use_colour(out: TextIO) -> bool:
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _cell_width(text: str) -> int:
    if text.isascii() and text.isprintable():
        return len(text)  # one cell a character, as rich counts it: its width tables load only for other text
    from rich.cells import cell_len

    return cell_len(text)


def _cut(text: str, width: int) -> str:
    if _cell_width(text) <= width:
        return text
    from rich.cells import set_cell_size

    return set_cell_size(text, width - 1) + ELLIPSIS


def _fit(widths: list[int], minimums: list[int], total: int) -> list[int]:
    """Narrow the widest columns first until the row fits ``total`` cells (or nothing can give more)."""
    widths = list(widths)
    excess = sum(widths) + len(COLUMN_GAP) * (len(widths) - 1) - total
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > minimums[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        others = [widths[i] for i in candidates if i != widest]
        step = max(1, min(excess, widths[widest] - max(minimums[widest], max(others, default=0))))
        widths[widest] -= step
        excess -= step
    return widths


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    out: TextIO | None = None,
    headers: bool = True,
    as_given: bool = False,
    fit: bool = True,
) -> None:
    """``as_given``: the headers are the column names as they are (custom-columns), not upper-cased fields.
    ``fit``: on a terminal, cut long cells to its width (``-o wide`` does not)."""
    out = out or sys.stdout
    terminal = out.isatty() and fit
    colour = _use_colour(out)
    header = [printable(c) if as_given else c.upper().replace("_", " ") for c in columns]
    body = [[printable(_cell(row.get(c))) or EMPTY_CELL for c in columns] for row in rows]
    lines = ([header] if headers else []) + body
    if not lines:
        return
    widths = [max(_cell_width(line[i]) for line in lines) for i in range(len(columns))]
    if terminal:
        # Only a terminal is cut to its width; a pipe gets every character.
        minimums = [min(widths[i], max(MIN_COLUMN_WIDTH, len(header[i]))) for i in range(len(columns))]
        widths = _fit(widths, minimums, shutil.get_terminal_size().columns)
    if title:
        out.write((f"\x1b[1m{title}\x1b[0m" if colour else title) + "\n")
    for number, line in enumerate(lines):
        is_header = headers and number == 0
        parts = []
        for i, text in enumerate(line):
            text = _cut(text, widths[i]) if terminal else text
            padding = "" if i == len(line) - 1 else " " * (widths[i] - _cell_width(text))
            if colour:
                code = (
                    "1"
                    if is_header
                    else _COLOUR_OF.get(text.casefold())
                    if columns[i] in ("status", "last_status", "class", "decision")
                    else None
                )
                if code:
                    text = f"\x1b[{code}m{text}\x1b[0m"
            parts.append(text + padding)
        out.write(COLUMN_GAP.join(parts).rstrip() + "\n")


def render_document(data: Mapping[str, Any], fmt: str, *, out: TextIO | None = None) -> None:
    """One object (``hosts show``): nested sections as YAML-ish text for people, full JSON/YAML for tools."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(to_json(data) + "\n")
        return
    from inventory.yaml_text import dump_yaml

    document = _for(out, _plain(dict(data)))
    out.write(dump_yaml(document, sort_keys=False, allow_unicode=True, default_flow_style=False))
