"""spaCy pipelines shared by search, auto-coding and de-identification.

The lemma-aware pipeline is ``spacy.blank("en")`` plus a lookup lemmatizer fed
by the English ``lemma_lookup`` table of ``spacy-lookups-data``: no trained
model is needed and nothing is downloaded. The lemmatizer works on whole
token arrays (one ``searchsorted`` per doc) instead of a Python loop over
tokens, which keeps auto-coding within a small factor of bare tokenisation.

Lemmas are lower-cased, so ``"Meetings"`` and ``"meeting"`` share the lemma
``"meeting"``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import spacy
from spacy.attrs import LEMMA, LOWER
from spacy.language import Language
from spacy.tokens import Doc

__all__ = [
    "LEMMATIZER",
    "lemma_of",
    "lemma_forms",
    "blank_pipeline",
    "lemma_pipeline",
    "lemmatize",
    "load_ner_model",
    "NERModelNotFound",
    "DEFAULT_MODELS",
]

LEMMATIZER = "peerlens_lookup_lemmatizer"

#: Trained English pipelines tried, in order, when ``model="auto"``.
DEFAULT_MODELS = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")

INSTALL_HINT = (
    "install a trained English pipeline, e.g. `python -m spacy download en_core_web_sm` "
    "or `pip install ./en_core_web_sm-3.8.0-py3-none-any.whl`, then pass "
    "model='en_core_web_sm' (a package name) or model='/path/to/pipeline' (a directory)"
)


class NERModelNotFound(OSError):
    """The requested statistical NER pipeline cannot be loaded."""


@lru_cache(maxsize=1)
def _lemma_arrays() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from spacy.lookups import load_lookups

    table = load_lookups("en", ["lemma_lookup"]).get_table("lemma_lookup")
    # Table keys are already spaCy string hashes, the same hashes as the LOWER
    # attribute of a token, so the map can be applied to arrays directly.
    keys = np.fromiter((k for k, _ in table.items()), dtype=np.uint64)
    values = tuple(v.lower() for _, v in table.items())
    order = np.argsort(keys, kind="stable")
    return keys[order], order, values


class _LookupLemmatizer:
    def __init__(self, nlp: Language) -> None:
        keys, order, values = _lemma_arrays()
        strings = nlp.vocab.strings
        value_hashes = np.fromiter((strings.add(v) for v in values), dtype=np.uint64)
        self.keys = keys
        self.vals = value_hashes[order]

    def __call__(self, doc: Doc) -> Doc:
        if not len(doc):
            return doc
        low = doc.to_array(LOWER).astype(np.uint64, copy=False)
        idx = np.searchsorted(self.keys, low)
        idx[idx >= len(self.keys)] = 0
        lemmas = np.where(self.keys[idx] == low, self.vals[idx], low)
        doc.from_array([LEMMA], lemmas.reshape(-1, 1))
        return doc


@Language.factory(LEMMATIZER)
def _make_lookup_lemmatizer(nlp: Language, name: str) -> _LookupLemmatizer:
    return _LookupLemmatizer(nlp)


def blank_pipeline() -> Language:
    """A tokenizer-only English pipeline."""
    return spacy.blank("en")


def lemma_pipeline(nlp: Language | None = None) -> Language:
    """English tokenizer + lookup lemmatizer (lower-cased lemmas).

    Examples
    --------
    >>> nlp = lemma_pipeline()
    >>> [t.lemma_ for t in nlp("Meetings helped")]
    ['meeting', 'help']
    """
    nlp = nlp or spacy.blank("en")
    if LEMMATIZER not in nlp.pipe_names:
        nlp.add_pipe(LEMMATIZER, first=True)
    return nlp


@lru_cache(maxsize=1)
def _shared_lemma_pipeline() -> Language:
    return lemma_pipeline()


def lemmatize(text: str, nlp: Language | None = None) -> list[str]:
    """Lemmas of the tokens of ``text`` (lower-cased).

    Examples
    --------
    >>> lemmatize("Peers were supporting")
    ['peer', 'be', 'support']
    """
    nlp = nlp or _shared_lemma_pipeline()
    return [t.lemma_ for t in nlp(text)]


@lru_cache(maxsize=1)
def _lookup_strings() -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """The English lemma lookup table with its strings, and its inverse.

    spaCy's ``Lookups`` keep only key hashes, so the inverse map (lemma -> every
    surface form) is read from the data file of spacy-lookups-data itself.
    """
    import spacy_lookups_data
    import srsly

    raw = srsly.read_gzip_json(spacy_lookups_data.get_file("en_lemma_lookup.json.gz"))
    table: dict[str, str] = {}
    for k, v in raw.items():
        if k == k.lower():  # tokens are looked up by their lower-case form
            table.setdefault(k, v.lower())
    inverse: dict[str, set[str]] = {}
    for k, v in table.items():
        inverse.setdefault(v, set()).add(k)
    return table, {k: frozenset(v) for k, v in inverse.items()}


def lemma_of(word: str) -> str:
    """Lemma of one word as the lookup lemmatizer gives it (lower-cased).

    Examples
    --------
    >>> lemma_of("Groups"), lemma_of("felt"), lemma_of("peerlens")
    ('group', 'feel', 'peerlens')
    """
    table, _ = _lookup_strings()
    w = word.lower()
    return table.get(w, w)


def lemma_forms(word: str) -> frozenset[str]:
    """Every lower-case surface form whose lemma equals the lemma of ``word``.

    Matching a token's lower-case text against these forms is the same as
    comparing lemmas from the lookup lemmatizer, without lemmatising the text.

    Examples
    --------
    >>> sorted(lemma_forms("walked"))
    ['walk', 'walked', 'walking', 'walks']
    """
    table, inverse = _lookup_strings()
    lemma = lemma_of(word)
    forms = set(inverse.get(lemma, ()))
    if lemma not in table:  # a lemma that is not itself a key maps to itself
        forms.add(lemma)
    return frozenset(forms)


def load_ner_model(model: str | Path | None = "auto") -> tuple[Language | None, str | None]:
    """Load a trained pipeline with an ``ner`` component.

    Parameters
    ----------
    model : str, Path, "auto" or None
        A package name (``"en_core_web_sm"``) or a directory saved with
        ``nlp.to_disk``. ``"auto"`` tries :data:`DEFAULT_MODELS` and returns
        ``(None, warning)`` when none is installed; ``None`` switches statistical
        NER off.

    Returns
    -------
    (nlp or None, warning or None)

    Raises
    ------
    NERModelNotFound
        When an explicitly named model cannot be loaded or has no ``ner``.
    """
    if model is None:
        return None, "statistical NER is off (model=None): only rule-based de-identification ran"
    if isinstance(model, str) and model == "auto":
        for name in DEFAULT_MODELS:
            if spacy.util.is_package(name):
                return _load(name), None
        return None, (
            "statistical NER is off: no trained English spaCy pipeline is installed, "
            "so only rule-based de-identification ran; " + INSTALL_HINT
        )
    return _load(model), None


@lru_cache(maxsize=8)
def _load_cached(model: str) -> Language:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nlp = spacy.load(model, exclude=["lemmatizer", "parser", "tagger", "attribute_ruler"])
    return nlp


def _load(model: str | Path) -> Language:
    try:
        nlp = _load_cached(str(model))
    except OSError as exc:
        raise NERModelNotFound(f"cannot load spaCy pipeline {model!r}: {exc}; {INSTALL_HINT}") from exc
    if "ner" not in nlp.pipe_names:
        raise NERModelNotFound(f"spaCy pipeline {model!r} has no 'ner' component")
    return nlp
