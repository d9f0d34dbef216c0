"""Text that looks the same triages the same (DESIGN.md, policy 7). Before any matching, a message is
rewritten into one plain form, and every character of that form remembers where it came from in the
patient's original text, so spans shown to the care team still point at the patient's own characters.

What is folded, and why each one matters (each was seen to hide an emergency before this step existed):
- Unicode compatibility forms (NFKC): fullwidth "ｆｅｖｅｒ", mathematical letters, ligatures, superscripts.
- Invisible characters (format characters: zero-width space, joiners, soft hyphen, word joiner, BOM,
  bidirectional marks, tag characters) are removed: "sei\\u200bzure" is "seizure".
- Accents and stray combining marks are dropped for matching: "fe\\u0301ver" is "fever".
- Any run of whitespace (line breaks, tabs, no-break and thin spaces, blank-looking letters) is one
  space, so "not  breathing" and "can't\\nbreathe" match like their plain forms. A line break is still
  remembered (`Normalised.breaks`): a denial never reaches across one ("no fever" / "headache").
- Letters confusable with Latin ones (Cyrillic "ѕ" in "ѕeizure", Greek "ο") become the Latin letter,
  from Unicode's confusables table (the `confusable_homoglyphs` package). Only in words that already
  hold a Latin letter, or in messages written mostly in Latin letters, so Russian or Greek text stays
  what it is and is still recognised as a language the assistant does not read.
- Digits of other scripts ("٣٩٫٥") are ASCII digits with a decimal point, so temperatures read right.
- Digits standing for letters between letters ("f3ver", "vom1ting") are the letters they stand for.
- Markup ("<b>fever</b>", "&nbsp;") is text, not tags: inline tags vanish, block tags are line breaks.

Folding never lowers a decision by itself: it only lets the catalogue see words it would otherwise
miss. The original text is never changed; only the matching sees the folded form.
"""

from __future__ import annotations

import bisect
import html
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

#: Characters that render as nothing but are not Unicode format characters.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
#: Inline markup disappears ("fe<b>ver</b>"); block markup ends a line ("fever<br>rash").
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]{0,15})(?:\s[^<>]{0,500})?/?>|<!--.{0,2000}?-->", re.DOTALL)
_BLOCK_TAGS = frozenset({"br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6",
                         "table", "blockquote", "pre", "hr", "section", "article", "header", "footer"})  # fmt: skip
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,10}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
#: Digits read as the letter they look like, only between two letters ("f3ver", "n4usea", "vom1ting").
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
_LEET_RUN = re.compile(r"(?<=[a-zA-Z])[013457@$]+(?=[a-zA-Z])")
#: Decimal and thousands separators of Arabic script.
_SEPARATORS = {"\u066b": ".", "\u066c": ",", "\u060c": ","}
#: Plain printable ASCII without double spaces, markup, entities or digits inside words needs no work.
_NEEDS_WORK = re.compile(r"[^\x20-\x7e]|  |<|&|[a-zA-Z][013457@$]")


@dataclass(frozen=True)
class Normalised:
    """The matching form of a message and, for each of its characters, the original characters it
    stands for (`starts[i]` to `ends[i]`). `breaks` are the positions of spaces that were line breaks."""

    original: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    breaks: tuple[int, ...] = ()

    def origin(self, start: int, end: int) -> tuple[int, int]:
        """The original range of the normalised range `start:end`."""
        if not self.text:
            return 0, 0
        if start >= end:
            at = self.starts[min(start, len(self.starts) - 1)] if start < len(self.starts) else len(self.original)
            return at, at
        return self.starts[start], self.ends[end - 1]

    def crosses_break(self, start: int, end: int) -> bool:
        """Whether a line break lies between the normalised positions `start` and `end`."""
        low, high = min(start, end), max(start, end)
        at = bisect.bisect_left(self.breaks, low)
        return at < len(self.breaks) and self.breaks[at] < high


def normalise(text: str) -> Normalised:
    """The matching form of `text` (see the module's docstring)."""
    if not _NEEDS_WORK.search(text):
        span = tuple(range(len(text)))
        return Normalised(text, text, span, tuple(i + 1 for i in span))
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    breaks: list[int] = []
    latin_context = _mostly_latin(text)

    def space(start: int, end: int, line_break: bool) -> None:
        if chars and chars[-1] == " ":
            ends[-1] = end  # one space for the whole run
            if line_break and (not breaks or breaks[-1] != len(chars) - 1):
                breaks.append(len(chars) - 1)
            return
        if line_break:
            breaks.append(len(chars))
        chars.append(" ")
        starts.append(start)
        ends.append(end)

    position, length = 0, len(text)
    while position < length:
        character = text[position]
        if character == "<" and (tag := _TAG.match(text, position)):
            if tag.group(2) and tag.group(2).lower() in _BLOCK_TAGS:
                space(position, tag.end(), line_break=True)
            position = tag.end()
            continue
        if character == "&" and (entity := _ENTITY.match(text, position)):
            cluster_end, cluster = entity.end(), html.unescape(entity.group())
        else:
            cluster_end = position + 1
            while cluster_end < length and unicodedata.combining(text[cluster_end]):
                cluster_end += 1
            cluster = text[position:cluster_end]
        if latin_context and cluster in confusables():
            # Before NFKC, which turns some look-alikes into other letters or into spaces ("ͺ").
            chars.append(confusables()[cluster])
            starts.append(position)
            ends.append(cluster_end)
            position = cluster_end
            continue
        for folded in unicodedata.normalize("NFKC", cluster) if cluster.isprintable() else cluster:
            kind = unicodedata.category(folded)
            if kind in ("Cf", "Mn", "Me"):
                continue  # invisible, or an accent / combining mark on its own
            if folded.isspace() or kind in ("Cc", "Cs", "Zs", "Zl", "Zp") or folded in _BLANK_LETTERS:
                space(position, cluster_end, folded in _LINE_BREAKS or kind in ("Zl", "Zp"))
                continue
            chars.append(_fold(folded, latin_context))
            starts.append(position)
            ends.append(cluster_end)
        position = cluster_end
    plain = "".join(chars)
    plain = _LEET_RUN.sub(lambda run: "".join(_LEET[c] for c in run.group()), plain)  # same length
    if not latin_context:
        plain = _fold_mixed_words(plain)
    return Normalised(text, plain, tuple(starts), tuple(ends), tuple(breaks))


def written_form(text: str) -> str:
    """The letters as the patient wrote them, accents and scripts kept, without compatibility forms or
    invisible characters: what the language check reads (folding would make "tête" look English)."""
    composed = unicodedata.normalize("NFKC", "".join(c for c in text if unicodedata.category(c) != "Cf"))
    return composed


def _fold(character: str, latin_context: bool) -> str:
    """One visible character as matching sees it: ASCII digit, unaccented letter, Latin look-alike."""
    if character.isascii():
        return character
    if character in _SEPARATORS:
        return _SEPARATORS[character]
    if character.isdecimal():
        return str(unicodedata.decimal(character))
    base = unicodedata.normalize("NFD", character)[0]
    if base.isascii() and base.isalpha():
        return base  # "é" -> "e", "ñ" -> "n"
    if latin_context:
        return confusables().get(character, character)
    return character


_WORD = re.compile(r"[^\W\d_]+")


def _fold_mixed_words(text: str) -> str:
    """In a message not mostly in Latin letters, folds look-alikes only in words that mix in Latin ones."""
    table = confusables()

    def fold(word: re.Match[str]) -> str:
        letters = word.group()
        if letters.isascii() or not any(c.isascii() for c in letters):
            return letters
        return "".join(table.get(c, c) for c in letters)

    return _WORD.sub(fold, text)


def _mostly_latin(text: str) -> bool:
    """More letters that are Latin (or look Latin) than letters of other scripts."""
    table = confusables()
    latin = other = 0
    for character in text:
        if character.isalpha():
            if character.isascii() or character in table or _latin_base(character):
                latin += 1
            else:
                other += 1
    return latin > other


def _latin_base(character: str) -> bool:
    base = unicodedata.normalize("NFKD", character)[:1]
    return base.isascii() and base.isalpha()


@lru_cache(maxsize=1)
def confusables() -> dict[str, str]:
    """Letters of other scripts that look like one ASCII letter, from Unicode's confusables table."""
    source = resources.files("confusable_homoglyphs").joinpath("confusables.json")
    table: dict[str, str] = {}
    for target, lookalikes in json.loads(source.read_text(encoding="utf-8")).items():
        if len(target) != 1 or not (target.isascii() and target.isalpha()):
            continue
        for entry in lookalikes:
            lookalike = entry["c"]
            if len(lookalike) == 1 and not lookalike.isascii() and unicodedata.category(lookalike).startswith("L"):
                table.setdefault(lookalike, target)
    # Matching sees letters after NFKC, which turns some look-alikes into others ("ϲ" into "ς").
    for lookalike, target in list(table.items()):
        compatible = unicodedata.normalize("NFKC", lookalike)
        if len(compatible) == 1 and not compatible.isascii():
            table.setdefault(compatible, target)
    return table
