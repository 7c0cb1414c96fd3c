"""YAML read and written one way everywhere: safe, and through libyaml's C parser and emitter when PyYAML was
built with it.

The C parser reads a config or a static inventory several times faster than PyYAML's pure-Python
one and builds the same values (the constructor is the same ``SafeConstructor``); its errors are
the same ``yaml.YAMLError`` classes with a ``problem_mark``, without the source snippet. The C emitter
writes a 15,000-row ``-o yaml`` list in a third of the time (the representer, ``SafeRepresenter``, is the
same): the same text, but for where it folds a long double-quoted string holding non-ASCII characters
(it counts bytes, not characters); either reads back to the same values.
"""

from __future__ import annotations

from typing import Any

import yaml

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, faster."""
    return yaml.load(text, Loader=_SafeLoader)


def dump_yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump(data, **options)`` as text, faster."""
    text: str = yaml.dump(data, Dumper=_SafeDumper, **options)
    return text
