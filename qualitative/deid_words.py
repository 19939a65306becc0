"""Word knowledge for de-identification: names the shipped lists do not know, nicknames, keep-lists.

Recall first, as Philter does: a capitalised word counts as a possible name unless it is known to
be safe. Safe means one of the shipped safe words (pronouns, kin terms, days, festivals), a clinical
term from the keep-list, or an everyday English word. "Everyday" is measured with ``wordfreq``'s
Zipf frequency (log10 of uses per billion words): a capitalised word in mid-sentence is kept when
its Zipf frequency is at least 4.5 ("Hope", "Mark", "Grace", "Bath" are 4.4-6.5; "Terry" 4.2,
"Gloria" 3.7, "Morag" 2.4); at the start of a sentence, where every word is capitalised, only
words rarer than 3.3 count.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from wordfreq import zipf_frequency

__all__ = [
    "clinical_terms",
    "safe_words",
    "nicknames",
    "name_variants",
    "is_common_word",
    "capitalised_candidates",
    "MID_SENTENCE_ZIPF",
    "SENTENCE_START_ZIPF",
]

MID_SENTENCE_ZIPF = 4.5
SENTENCE_START_ZIPF = 3.3

Hit = tuple[int, int, str, str]

_TITLES = frozenset(
    "Dr Doctor Mr Mrs Ms Miss Mx Prof Professor Nurse Sister Father Rev Reverend Auntie Aunty Uncle "
    "Pastor Imam Rabbi Councillor Cllr Sir Dame Lady Lord".split()
)
_PLACE_CUES = frozenset("in from near to round around outside towards via".split())


def _read(name: str) -> list[str]:
    text = resources.files("qualitative").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def clinical_terms() -> frozenset[str]:
    """Clinical and service terms never replaced by word rules (case-folded): COPD, GP, HbA1c, NHS..."""
    return frozenset(t.casefold() for t in _read("clinical_terms.txt"))


@lru_cache(maxsize=1)
def safe_words() -> frozenset[str]:
    """Capitalised words that identify no one (case-folded)."""
    return frozenset(t.casefold() for t in _read("safe_words.txt"))


@lru_cache(maxsize=1)
def nicknames() -> dict[str, frozenset[str]]:
    """Given name (case-folded) -> its everyday short forms, and each short form -> its given names."""
    out: dict[str, set[str]] = {}
    for line in _read("nicknames.txt"):
        name, _, forms = line.partition(":")
        for form in forms.split():
            out.setdefault(name.strip().casefold(), set()).add(form)
    return {k: frozenset(v) for k, v in out.items()}


@lru_cache(maxsize=1)
def _first_names() -> frozenset[str]:
    return frozenset(_read("first_names.txt"))


@lru_cache(maxsize=1)
def _places() -> frozenset[str]:
    return frozenset(_read("places.txt"))


@lru_cache(maxsize=1)
def _org_words() -> frozenset[str]:
    return frozenset(_read("organisation_words.txt"))


@lru_cache(maxsize=65536)
def _zipf(word: str) -> float:
    return zipf_frequency(word, "en")


def is_common_word(word: str, threshold: float = MID_SENTENCE_ZIPF) -> bool:
    """Whether ``word`` is an everyday English word (Zipf frequency at least ``threshold``).

    >>> is_common_word("Hope"), is_common_word("Morag")
    (True, False)
    """
    return _zipf(word.casefold()) >= threshold


def name_variants(full: str) -> set[str]:
    """Forms of a person's name a speaker may use: the full name, each part, first + last, nicknames.

    >>> sorted(name_variants("Sandra Kowalski"))
    ['Kowalski', 'Sandra', 'Sandra Kowalski', 'Sandy', 'Sandy Kowalski']
    """
    parts = [p for p in full.split() if len(p.strip(".")) >= 2 and p.strip(".") not in _TITLES]
    out = {" ".join(full.split()), *parts}
    if len(parts) >= 3:
        out.add(f"{parts[0]} {parts[-1]}")
    if parts:
        for nick in nicknames().get(parts[0].casefold(), ()):
            out.add(nick)
            if len(parts) >= 2:
                out.add(f"{nick} {parts[-1]}")
    return {v for v in out if v}


_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'’-]*[A-Za-z0-9]|[A-Za-z]")
_LABEL = re.compile(r"^[ \t]*[^:\n]{1,40}:[ \t]")
_SENTENCE_END = set('.!?:;"“(…')


def _strip_possessive(tok: str) -> str:
    return re.sub(r"(?:'s|’s|'|’)$", "", tok)


def _is_cap(tok: str) -> bool:
    # Short all-capital tokens are acronyms (GP, NI, BP), handled by the keep-list and patterns.
    return tok[0].isupper() and not (tok.isupper() and len(tok) <= 5)


def capitalised_candidates(text: str, *, keep: frozenset[str] = frozenset()) -> list[Hit]:
    """Runs of capitalised words that may be names, places or organisations.

    A run is reported when one of its words is a known given name, a listed place, or not an
    everyday word (see module notes); titles ("Dr", "Mrs") and safe words at its edges stay.

    >>> text = "I met Morag and Hope at the group. Terry came too."
    >>> [text[s:e] for s, e, _, _ in capitalised_candidates(text)]
    ['Morag']
    """
    safe = safe_words() | clinical_terms() | keep
    out: list[Hit] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        label = _LABEL.match(line)
        start_at = label.end() if label else 0
        run: list[tuple[int, int, str, bool]] = []  # (start, end, token, sentence_start)
        prev_end = start_at
        prev_word = ""
        for m in _TOKEN.finditer(line, start_at):
            tok = _strip_possessive(m.group())
            if not tok:
                continue
            gap = line[prev_end : m.start()]
            before = line[start_at : m.start()].rstrip()
            sentence_start = not before or before[-1] in _SENTENCE_END
            if _is_cap(tok):
                if run and (gap not in (" ", "-") or sentence_start):
                    out += _judge(run, pos, safe, prev_word)
                    run = []
                if not run:
                    prev_word = line[start_at : m.start()].split()[-1].lower() if before else ""
                run.append((m.start(), m.start() + len(tok), tok, sentence_start))
            elif run:
                out += _judge(run, pos, safe, prev_word)
                run = []
            prev_end = m.end()
        if run:
            out += _judge(run, pos, safe, prev_word)
        pos += len(line)
    return out


def _judge(run, offset: int, safe: frozenset[str], prev_word: str) -> list[Hit]:
    names, places = _first_names(), _places()

    def interesting(tok: str, sentence_start: bool) -> bool:
        if tok.casefold() in safe or tok in _TITLES:
            return False
        if tok in names or tok in places:
            return True
        return not is_common_word(tok, SENTENCE_START_ZIPF if sentence_start else MID_SENTENCE_ZIPF)

    flags = [interesting(tok, ss) for _, _, tok, ss in run]
    if not any(flags):
        return []
    # Trim safe words, titles and (at a sentence start) everyday words from the run's edges.
    lo, hi = 0, len(run) - 1
    # A sentence-initial word before a name is trimmed only when it is an everyday word ("Well
    # Terry"); a rarer one is taken for a given name ("Desmond Afolabi").
    while lo < hi and (
        run[lo][2].casefold() in safe
        or run[lo][2] in _TITLES
        or (run[lo][3] and not flags[lo] and is_common_word(run[lo][2]))
    ):
        lo += 1
    while hi > lo and run[hi][2].casefold() in safe:
        hi -= 1
    s, e = offset + run[lo][0], offset + run[hi][1]
    toks = [t for _, _, t, _ in run[lo : hi + 1]]
    if toks[-1].casefold() in _org_words():
        kind = "ORG"
    elif all(t in places for t in toks) or (prev_word in _PLACE_CUES and not any(t in names for t in toks)):
        kind = "PLACE"
    else:
        kind = "PERSON"
    surface = " ".join(toks)
    return [(s, e, kind, f"{kind}:{surface.casefold()}")]
