"""Names that look alike: a principal called ``alice`` spelt with a Cyrillic a (U+0430)
must not pass for ``alice``.

``skeleton`` follows UTS #39's idea of a skeleton (two strings are confusable when their skeletons are
equal) with a compact table instead of the full confusables.txt: NFKC (which already folds fullwidth,
mathematical and other compatibility forms), then the look-alike letters of Cyrillic, Greek and
Latin extensions mapped to the ASCII letter they imitate, before and after case folding (``I`` and
``l``, ``0`` and ``o``, ``1`` and ``l`` count as one), then default-ignorable characters dropped. It
is written for principal names (short, mostly ASCII); it catches the homoglyph attacks that matter
there and may call two honest names alike (``agent0`` and ``agento``), which costs a rename.

``invisible_character`` finds what NFKC and ``str.isprintable`` let through yet shows as nothing
(Hangul fillers, variation selectors, the combining grapheme joiner).
"""

from __future__ import annotations

import unicodedata

# Each look-alike (first string, written as escapes: the letters themselves would look like ASCII here) and the
# ASCII letter it imitates (second string, same position). Upper-case look-alikes map to the lower-case letter,
# so that case folding cannot separate them again.
_LOOKALIKE_TABLE = (
    # Cyrillic
    (
        "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445\u0455\u0456\u0457",
        "abeekmhopctyxsii",
    ),
    (
        "\u0458\u04bb\u0501\u051b\u051d\u04cf\u044c\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421",
        "jhdqwlbabekmhopc",
    ),
    ("\u0422\u0423\u0425\u0405\u0406\u0408\u04c0\u051a\u051c", "tyxsljlqw"),
    # Greek
    (
        "\u03b1\u03b2\u03b3\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9\u0391\u0392\u0395",
        "abyeikvoptuxwabe",
    ),
    ("\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7", "zhlkmnoptyx"),
    # Latin extensions, digits
    ("\u0261\u0131\u0251\u0269\u029f\u01c0I01", "giailllol"),
)
_LOOKALIKES = str.maketrans(
    "".join(source for source, _ in _LOOKALIKE_TABLE), "".join(to for _, to in _LOOKALIKE_TABLE)
)

# Shown as nothing although NFKC keeps them and str.isprintable() accepts them.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")


def invisible_character(text: str) -> str | None:
    """The first character of ``text`` that shows as nothing, if any (see the module's docstring)."""
    for char in text:
        code = ord(char)
        if char in _INVISIBLE or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
            return char
    return None


def skeleton(text: str) -> str:
    """What ``text`` looks like: equal skeletons, confusable names."""
    folded = unicodedata.normalize("NFKC", text).translate(_LOOKALIKES).casefold().translate(_LOOKALIKES)
    # As UTS #39: decomposed (a precomposed U+0451 and U+0435 + U+0308 are one), default-ignorables dropped.
    shown = unicodedata.normalize("NFD", folded)
    return "".join(c for c in shown if unicodedata.category(c) != "Cf" and c not in _INVISIBLE)
