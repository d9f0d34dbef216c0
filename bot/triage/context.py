"""What the words around a symptom say about it: denied, resolved, hypothetical, or described as severe.

The engine is medspaCy's ConText; the cues are data (`knowledge/context_rules.json`). A cue is matched on
match keys by default, so "dont have", "don't have" and "do not have" are one cue; a cue with
`"attr": "LOWER"` is matched on the exact words, for cues whose tense matters ("stopped", "went away",
unlike "make it stop" or "make it go away"). There are deliberately no cues for family members: a parent
reporting "my son has a fever" is reporting the patient.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medspacy.context import ConText, ConTextModifier, ConTextRule
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from bot.triage.knowledge import KnowledgeError

NEGATED = "NEGATED_EXISTENCE"
RESOLVED = "RESOLVED"
HYPOTHETICAL = "HYPOTHETICAL"
#: A question about what the medicine can do ("could this make me tired?"): information, not a report.
QUESTION = "QUESTION"
#: Someone who is not the patient ("my friend gets migraines"); a caregiver's "my son" is the patient.
OTHER_PERSON = "OTHER_PERSON"
#: Words quoted from the leaflet or a website ("the leaflet mentions chest pain").
QUOTED = "QUOTED"
SEVERE = "SEVERE"

#: Categories that mean the symptom is not present now, and the word the output uses for each.
#: Said of something going well ("slept well"), or a question opening the sentence ("can he eat …?"):
#: these set aside only the complaint net's everyday words, never a catalogue symptom.
WELL = "WELL"
ASKING = "ASKING"
NOT_A_COMPLAINT = frozenset({WELL, ASKING})
EXCLUDING = {
    NEGATED: "negated",
    RESOLVED: "resolved",
    HYPOTHETICAL: "hypothetical",
    QUESTION: "asked about",
    OTHER_PERSON: "someone else",
    QUOTED: "quoted",
}
#: Set-aside contexts that are questions to answer from the medicine guide ("could this make me tired?",
#: "what if I get a rash?"); the NLU routes them to the triage action, which answers them.
ASKED = frozenset({EXCLUDING[QUESTION], EXCLUDING[HYPOTHETICAL]})
_DIRECTIONS = {"FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"}
GROUP = "triage_targets"


@dataclass(frozen=True)
class Cue:
    """A context cue that modifies a target: its category, the words that triggered it, and where those
    words are in the text the doc was made from (character offsets)."""

    category: str
    text: str
    start: int = 0
    end: int = 0


class Context:
    """Runs ConText over target spans and reports each span's cues."""

    def __init__(self, nlp: Language, rules_paths: list[Path], key: Callable[[str], str]) -> None:
        keyed = KeyedPipeline(nlp, key)
        rules = [rule for path in rules_paths for rule in load_rules(path, keyed)]
        # A cue inside a symptom's own words ("not eating", "can't wake him") is part of the symptom.
        self._context = _context(keyed, rules, prune_on_target_overlap=True)
        # For whole clauses (the semantic matcher's targets), whose cues lie inside them.
        self._inside = _context(keyed, rules, prune_on_target_overlap=False)

    def cues(self, doc: Doc, spans: list[tuple[int, int]], *, within: bool = False) -> list[tuple[Cue, ...]]:
        """The cues that modify each (start, end) token range, in the order given. `within`: cues inside
        a range modify it too (for clauses, not for catalogue phrases)."""
        if not spans:
            return []
        targets = [Span(doc, start, end, label="TARGET") for start, end in spans]
        found: dict[tuple[int, int], list[Cue]] = {span: [] for span in spans}
        for target, modifier in run_context(self._inside if within else self._context, doc, targets):
            start, end = modifier.modifier_span
            words = doc[start:end]
            found[(target.start, target.end)].append(
                Cue(modifier.category, words.text, words.start_char, words.end_char)
            )
        return [tuple(found[span]) for span in spans]


def run_context(context: ConText, doc: Doc, targets: list[Span]) -> list[tuple[Span, ConTextModifier]]:
    """medspaCy 1.2's `ConText.__call__`, less what the triage does not use, with the same edges: the
    scope of each cue is its sentence (then its rule's `max_scope`), found from sentence starts read once
    per doc instead of a sentence span built per cue; targets are a plain list (a span group makes a new
    Span each time ConText walks it); no span attributes are set. `tests/test_context.py` checks it
    against `ConText.__call__` on every evaluation message."""
    matcher = getattr(context, _CONTEXT_MATCHER)
    matches = matcher(doc)
    if not matches:
        return []
    starts = [i for i, start in enumerate(doc.to_array("SENT_START").tolist()) if start == 1 or i == 0]
    length = len(doc)
    strings = doc.vocab.strings
    modifiers: list[ConTextModifier] = []
    for match_id, start, end in matches:
        rule = matcher.rule_map[strings[match_id]]
        first = bisect.bisect_right(starts, start) - 1
        sentence_start = starts[first]
        sentence_end = starts[first + 1] if first + 1 < len(starts) else length
        scope = _scope(rule, start, end, sentence_start, sentence_end)
        modifiers.append(ConTextModifier(rule, start, end, doc, scope[0], scope[1], context.max_scope))
    _update_scopes(modifiers)
    return _edges(modifiers, targets, prune=context.prune_on_target_overlap)


def _update_scopes(modifiers: list[ConTextModifier]) -> None:
    """medspaCy 1.2's `ConTextGraph.update_scopes`: each pair of cues limits the other's scope."""
    for i in range(len(modifiers) - 1):
        first = modifiers[i]
        for j in range(i + 1, len(modifiers)):
            second = modifiers[j]
            _limit_scope(first, second)
            _limit_scope(second, first)


def _limit_scope(cue: ConTextModifier, other: ConTextModifier) -> None:
    """medspaCy 1.2's `ConTextModifier.limit_scope`, on the modifiers' own fields: a cue of the same
    category, one that terminates, or one named in `terminated_by` ends the cue's scope where it starts
    (looking forward) or ends (looking backward)."""
    start, end = cue._scope_start, cue._scope_end
    other_start, other_end = other._scope_start, other._scope_end
    if not (start <= other_start < end or start < other_end <= end):
        return
    rule, other_rule = cue._context_rule, other._context_rule
    direction = rule.direction.upper()
    if direction == "TERMINATE":
        return
    other_category = other_rule.category.upper()
    if (
        other_rule.direction.upper() != "TERMINATE"
        and other_category not in rule.terminated_by
        and other_category != rule.category.upper()
    ):
        return
    if rule.category == other_rule.category and (
        rule.allowed_types != other_rule.allowed_types or rule.excluded_types != other_rule.excluded_types
    ):
        return
    if direction in ("FORWARD", "BIDIRECTIONAL") and other._start > cue._start:
        cue._scope_end = min(cue._scope_end, other._start)
    if direction in ("BACKWARD", "BIDIRECTIONAL") and other._end < cue._end:
        cue._scope_start = max(cue._scope_start, other._end)


def _edges(modifiers: list[ConTextModifier], targets: list[Span], *, prune: bool) -> list[tuple[Span, ConTextModifier]]:
    """medspaCy 1.2's `ConTextGraph.apply_modifiers` with the triage's targets (no types, no callbacks,
    no target limits, which `load_rules` never sets): with `prune`, a cue overlapping a target is
    dropped; a cue modifies each target that starts or ends in its scope and not in its own words."""
    spans = [(target.start, target.end) for target in targets]
    if prune:
        modifiers = [
            modifier
            for modifier in modifiers
            if not any(start <= modifier._start < end or start < modifier._end <= end for start, end in spans)
        ]
    found: dict[int, list[Span]] = {}
    for target, (start, end) in zip(targets, spans, strict=True):
        for index, modifier in enumerate(modifiers):
            if modifier._start <= start < modifier._end or modifier._start < end <= modifier._end:
                continue  # the target starts or ends inside the cue's own words
            if modifier._context_rule.direction in ("TERMINATE", "PSEUDO"):
                continue
            scope_start, scope_end = modifier._scope_start, modifier._scope_end
            if scope_start <= start < scope_end or scope_start < end <= scope_end:
                found.setdefault(index, []).append(target)
    return [(target, modifier) for index, modifier in enumerate(modifiers) for target in found.get(index, ())]


def _scope(rule: ConTextRule, start: int, end: int, sentence_start: int, sentence_end: int) -> tuple[int, int]:
    """A cue's scope as medspaCy 1.2's `ConTextModifier.__set_scope` sets it when ConText has no
    `max_scope` of its own: the cue's sentence in its direction, cut to the rule's `max_scope`."""
    direction, max_scope = rule.direction.lower(), rule.max_scope
    if direction == "forward":
        scope_end = sentence_end
        if max_scope is not None and scope_end - end > max_scope:
            scope_end = end + max_scope
        return end, scope_end
    if direction == "backward":
        scope_start = sentence_start
        if max_scope is not None and start - scope_start > max_scope:
            scope_start = start - max_scope
        return scope_start, start
    scope_start, scope_end = sentence_start, sentence_end
    if max_scope is not None and start - scope_start > max_scope:
        scope_start = start - max_scope
    if max_scope is not None and scope_end - end > max_scope:
        scope_end = end + max_scope
    return scope_start, scope_end


def _context(keyed: KeyedPipeline, rules: list[ConTextRule], *, prune_on_target_overlap: bool) -> ConText:
    context = ConText(
        keyed,  # type: ignore[arg-type]
        rules=None,
        phrase_matcher_attr="LEMMA",
        span_attrs=None,
        prune_on_target_overlap=prune_on_target_overlap,
        input_span_type="group",
        span_group_name=GROUP,
    )
    context.add(rules)
    _match_cues_faster(context, keyed)
    for rule in context.rules:  # what `_edges` leaves out must stay unused
        if (rule.allowed_types, rule.excluded_types, rule.max_targets, rule.on_modifies) != (None, None, None, None):
            raise KnowledgeError(f"context rule {rule.literal!r}: target types, limits and callbacks are not supported")
    return context


class _CueMatcher:
    """Stands in for the token-pattern Matcher inside ConText's matcher, with the same matches, found
    faster. spaCy's Matcher tries every pattern at every token, and a word-set test ("IN") is a Python
    call each time. So:
    - cues of exact words ("attr": "LOWER") go to one PhraseMatcher on lowercase words (a hash lookup
      per token);
    - a pattern whose first word is required and exact or from a set, and whose length is bounded, is
      tried only where its first word stands, on the few tokens it can span;
    - any other pattern stays in a Matcher over the whole doc.
    Exact words come first, as they did when they were patterns added before the others."""

    def __init__(self, vocab: Vocab, rules: list[ConTextRule]) -> None:
        self._exact = PhraseMatcher(vocab, attr="LOWER")
        self._anchored = Matcher(vocab)
        self._anywhere = Matcher(vocab)
        self._starts = PhraseMatcher(vocab, attr="LOWER")  # where an anchored pattern's first word stands
        self._longest = 0
        for rule in rules:
            pattern = rule.pattern
            if not isinstance(pattern, list) or not pattern:
                continue  # literal and regular-expression cues are matched elsewhere in ConText
            if all(set(token) == {"LOWER"} and isinstance(token["LOWER"], str) for token in pattern):
                self._exact.add(rule._rule_id, [Doc(vocab, words=[token["LOWER"] for token in pattern])])
                continue
            first = _first_words(pattern)
            if first is None or any(token.get("OP", "") not in ("", "?", "!") for token in pattern):
                self._anywhere.add(rule._rule_id, [pattern])
                continue
            self._anchored.add(rule._rule_id, [pattern])
            for word in first:
                self._starts.add("start", [Doc(vocab, words=[word])])
            self._longest = max(self._longest, len(pattern))

    def __call__(self, doc: Doc) -> list[tuple[int, int, int]]:
        matches: list[tuple[int, int, int]] = self._exact(doc)
        anchored: list[tuple[int, int, int]] = []
        for i in sorted({start for _, start, _ in self._starts(doc)}):
            anchored += [(key, i, i + end) for key, start, end in self._anchored(doc[i : i + self._longest])
                         if start == 0]  # fmt: skip
        anywhere: list[tuple[int, int, int]] = self._anywhere(doc) if len(self._anywhere) else []
        # The Matcher's own order: by start, then by the order the patterns were added.
        return matches + sorted(anchored + anywhere, key=lambda match: match[1])


def _first_words(pattern: list[dict[str, Any]]) -> frozenset[str] | None:
    """The words a pattern must start with, when its first token is required and names them exactly."""
    first = pattern[0]
    if set(first) != {"LOWER"}:
        return None
    value = first["LOWER"]
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, dict) and set(value) == {"IN"} and all(isinstance(word, str) for word in value["IN"]):
        return frozenset(value["IN"])
    return None


#: Where medspaCy 1.2 keeps ConText's matcher and that matcher's token-pattern Matcher (private names,
#: checked at start-up: a medspaCy that keeps them elsewhere fails loudly here, not silently slower).
_CONTEXT_MATCHER = "_ConText__matcher"
_TOKEN_MATCHER = "_MedspacyMatcher__matcher"


def _match_cues_faster(context: ConText, keyed: KeyedPipeline) -> None:
    try:
        outer = getattr(context, _CONTEXT_MATCHER)
        patterns = getattr(outer, _TOKEN_MATCHER)
    except AttributeError as exc:
        raise RuntimeError(f"medspaCy's ConText no longer keeps its matcher where expected ({exc})") from exc
    if not isinstance(patterns, Matcher):
        raise RuntimeError(f"medspaCy's ConText matcher holds {type(patterns).__name__}, not a spaCy Matcher")
    setattr(outer, _TOKEN_MATCHER, _CueMatcher(keyed.vocab, context.rules))


class KeyedPipeline:
    """What ConText needs of a pipeline (vocab, make_doc, calling it on a cue's literal), with tokens
    carrying match keys as lemmas, so that literal cues go to spaCy's PhraseMatcher on keys: one hash
    lookup per token instead of a token-pattern automaton per cue."""

    def __init__(self, nlp: Language, key: Callable[[str], str]) -> None:
        self.vocab = nlp.vocab
        self.tokenizer = self  # medspaCy builds phrase patterns with `nlp.tokenizer(literal)`
        self._nlp = nlp
        self._key = key

    def make_doc(self, text: str) -> Doc:
        return self._nlp.make_doc(text)

    def __call__(self, text: str) -> Doc:
        doc = self._nlp.make_doc(text.lower())
        for token in doc:
            token.lemma_ = self._key(token.norm_)
        return doc


def load_rules(path: Path, nlp: KeyedPipeline) -> list[ConTextRule]:
    """Reads the cue file. Literal cues are matched on match keys (PhraseMatcher); cues marked
    `"attr": "LOWER"` become token patterns on the exact words."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries: list[dict[str, Any]] = data["context_rules"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KnowledgeError(f'{path}: cannot read context rules ({exc}); expected {{"context_rules": [...]}}') from exc
    rules = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"{path}, rule {number} ({entry.get('literal')!r})"
        direction = str(entry.get("direction", "")).upper()
        if direction not in _DIRECTIONS:
            raise KnowledgeError(f"{where}: direction {direction!r}; allowed: {', '.join(sorted(_DIRECTIONS))}")
        literal = str(entry.get("literal") or "").strip()
        if not literal or not entry.get("category"):
            raise KnowledgeError(f"{where}: 'literal' and 'category' are required")
        pattern = entry.get("pattern")
        identity_words: object = pattern
        if pattern is None and str(entry.get("attr", "LEMMA")).upper() == "LOWER":
            pattern = [{"LOWER": token.lower_} for token in nlp.make_doc(literal.lower())]
            identity_words = pattern
        elif pattern is None:
            identity_words = [token.lemma_ for token in nlp(literal)]
        # Spelling variants of one cue ("dont have", "don't have", "do not have") share one pattern;
        # keeping one keeps the matcher fast.
        identity = json.dumps([entry["category"], direction, identity_words], sort_keys=True)
        if identity in seen:
            continue
        seen.add(identity)
        max_scope = entry.get("max_scope")
        if direction == "PSEUDO" and max_scope is None:
            # medspaCy 1.2's tuple_overlaps misses a scope lying wholly inside another, so a pseudo cue
            # scoped to its whole sentence would never end a negation's scope; one token each side does.
            max_scope = 1
        rules.append(
            ConTextRule(
                literal,
                str(entry["category"]).upper(),
                pattern=pattern,
                direction=direction,
                max_scope=max_scope,
                terminated_by=set(entry.get("terminated_by") or ()),
            )
        )
    return rules
