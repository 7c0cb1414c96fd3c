"""kubectl's JSONPath templates (``-o jsonpath=``, ``-o custom-columns=``) over the JSON rows of a list.

No library on PyPI reads kubectl's templates: ``jsonpath-ng`` and its kin take bare JSONPath
expressions, not text with ``{...}`` actions, ``{range}``/``{end}`` and quoted literals. This
is the subset of kubectl's that a flat list of rows needs:

    {.items[*].name}                             every row's name, separated by spaces
    {.items[0].labels.app}  {.items[-1].name}    one row; a label; indexes from the end
    {.items[*]['name','status']}                 several fields
    {range .items[*]}{.name}{"\\t"}{.status}{"\\n"}{end}   one line per row
    {$.items[*].id}  {@.name}                    the root, the current object

Text outside ``{...}`` is printed as it is. A path that finds nothing prints nothing (kubectl
fails on a missing key only with --allow-missing-template-keys=false, which this does not offer).
Lists and mappings are printed as JSON, as kubectl does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from inventory.errors import UsageError

_STEP = re.compile(
    r"""\.\.?([A-Za-z0-9_-]+|\*)|\[\s*(\*|-?\d+|(?:'[^']*'|"[^"]*")(?:\s*,\s*(?:'[^']*'|"[^"]*"))*)\s*\]"""
)
_LITERAL = re.compile(r"""^(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')$""")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces of a template."""
    pieces, position = [], 0
    while position < len(template):
        start = template.find("{", position)
        if start < 0:
            pieces.append(("text", template[position:]))
            break
        if start > position:
            pieces.append(("text", template[position:start]))
        end = _closing_brace(template, start)
        pieces.append(("action", template[start + 1 : end].strip()))
        position = end + 1
    return pieces


def _closing_brace(template: str, start: int) -> int:
    quote = None
    for index in range(start + 1, len(template)):
        char = template[index]
        if quote:
            if char == "\\":
                continue
            if char == quote and template[index - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "}":
            return index
    raise UsageError(f"jsonpath {template!r}: unclosed '{{'")


def evaluate_path(path: str, root: Any, current: Any) -> list[Any]:
    """Every value ``path`` (``.a.b``, ``$.items[*].x``, ``@.y``, ``['k']``) finds."""
    text = path.strip()
    values = [root] if text.startswith("$") else [current]
    text = text.lstrip("$@")
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if not match:
            raise UsageError(f"jsonpath: cannot read {path!r} at {text[position:]!r}")
        position = match.end()
        name, bracket = match.group(1), match.group(2)
        if match.group(0).startswith(".."):
            raise UsageError(f"jsonpath: recursive descent ('..') is not supported in {path!r}")
        values = [found for value in values for found in _step(value, name, bracket)]
    return values


def _step(value: Any, name: str | None, bracket: str | None) -> list[Any]:
    if name is not None and name != "*":
        return [value[name]] if isinstance(value, Mapping) and name in value else []
    if name == "*" or bracket == "*":
        if isinstance(value, Mapping):
            return list(value.values())
        return list(value) if isinstance(value, list) else []
    assert bracket is not None
    if bracket.lstrip("-").isdigit():
        index = int(bracket)
        return [value[index]] if isinstance(value, list) and -len(value) <= index < len(value) else []
    keys = [_unescape(key.strip()[1:-1]) for key in re.findall(r"""'[^']*'|"[^"]*\"""", bracket)]
    return [value[key] for key in keys if isinstance(value, Mapping) and key in value]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Mapping, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def render_template(template: str, data: Any) -> str:
    """The text kubectl's ``-o jsonpath=TEMPLATE`` prints for ``data``."""
    tokens = _tokens(template)
    out, _ = _run(tokens, 0, data, data, template)
    return out


def _run(tokens: list[tuple[str, str]], index: int, root: Any, current: Any, template: str) -> tuple[str, int]:
    """Render from ``tokens[index]`` up to a matching {end} (or the end); returns the text and where it stopped."""
    out: list[str] = []
    while index < len(tokens):
        kind, body = tokens[index]
        index += 1
        if kind == "text":
            out.append(body)
        elif body == "end":
            return "".join(out), index
        elif body.startswith("range "):
            items = evaluate_path(body[len("range ") :], root, current)
            end = _matching_end(tokens, index, template)
            for item in items:
                text, _ = _run(tokens[: end + 1], index, root, item, template)
                out.append(text)
            index = end + 1
        elif literal := _LITERAL.match(body):
            out.append(_unescape(literal.group(1) if literal.group(1) is not None else literal.group(2)))
        else:
            out.append(" ".join(_text(v) for v in evaluate_path(body, root, current)))
    return "".join(out), index


def _matching_end(tokens: list[tuple[str, str]], index: int, template: str) -> int:
    depth = 0
    for position in range(index, len(tokens)):
        kind, body = tokens[position]
        if kind != "action":
            continue
        if body.startswith("range "):
            depth += 1
        elif body == "end":
            if depth == 0:
                return position
            depth -= 1
    raise UsageError(f"jsonpath {template!r}: {{range}} without {{end}}")


def parse_custom_columns(spec: str) -> list[tuple[str, str]]:
    """``NAME:.name,STATUS:.status`` -> [("NAME", ".name"), ...]; a path may be written with or without braces."""
    columns = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header.strip() or not path.strip():
            raise UsageError(f"custom-columns: {part!r} is not HEADER:.path (e.g. NAME:.name,STATUS:.status)")
        path = path.strip()
        if path.startswith("{") and path.endswith("}"):
            path = path[1:-1]
        evaluate_path(path, {}, {})  # a path that cannot be read is a usage error before any row is printed
        columns.append((header.strip(), path))
    return columns


def column_value(path: str, row: Any) -> str:
    return ",".join(_text(v) for v in evaluate_path(path, row, row))
