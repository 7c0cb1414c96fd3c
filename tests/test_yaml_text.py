"""YAML through libyaml's C parser and emitter: the same values as PyYAML's pure-Python ones, faster."""

from __future__ import annotations

import random

import pytest
import yaml

from inventory import yaml_text
from inventory.yaml_text import dump_yaml, load_yaml

# Characters a hostile or merely foreign label may hold: C0 and C1 controls, DEL, NEL, the line and paragraph
# separators, a bidi override, zero-width and BOM, accented and CJK letters, an emoji beyond the BMP.
_TRICKY = [chr(c) for c in (*range(0x80), 0x85, 0xA0, 0xAD, 0x2028, 0x2029, 0x202E, 0x200B, 0xFEFF, 0xE9, 0x4E2D)]
_TRICKY.append("\U0001f600")


def test_the_c_parser_and_emitter_are_the_ones_used_where_pyyaml_has_them() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml: the pure-Python classes are used")
    assert yaml_text._SafeLoader is yaml.CSafeLoader
    assert yaml_text._SafeDumper is yaml.CSafeDumper


def test_rows_are_written_as_the_pure_python_emitter_writes_them() -> None:
    rows = [
        {
            "id": 4,
            "name": "web-7d9f8c6b5-x2",
            "labels": {"app": "web", "tier": "front end"},
            "attributes": {"images": ["nginx:1.25"], "restarts": 0, "note": "déjà vu, 中文", "empty": None},
            "first_seen_at": "2026-12-06T10:00:00Z",
        }
    ]
    assert dump_yaml(rows, sort_keys=False, allow_unicode=True) == yaml.safe_dump(
        rows, sort_keys=False, allow_unicode=True
    )


def test_any_text_reads_back_as_it_was_written() -> None:
    randomly = random.Random(20)
    for _ in range(3000):
        text = "".join(randomly.choice(_TRICKY) for _ in range(randomly.randint(0, 150)))
        document = {"name": text, "labels": {text[:12] or "key": text}, "list": [text, text[::-1]]}
        written = dump_yaml(document, sort_keys=False, allow_unicode=True)
        assert load_yaml(written) == yaml.safe_load(written) == document, repr(text)
