"""Peerlens qualitative layer: transcripts, de-identification, codebook,
auto-coding, inter-coder agreement, REFI-QDA exchange and joint displays.

A pure library: it never touches HTTP or a database.

Examples
--------
>>> from qualitative import parse_text, Codebook, Code, Coding, segments
>>> t = parse_text("Interviewer: How was the group?\\nP01: I felt less alone.", id="p01-w1", participant="P01")
>>> cb = Codebook([Code("reduced_isolation", "Reduced isolation", keywords=("alone", "lonely"))])
>>> segments([Coding("p01-w1", "reduced_isolation", 37, 55, "ana")], [t])["text"].tolist()
['I felt less alone.']
"""

import sys
from importlib import import_module
from types import ModuleType

# Names are loaded from their module on first use (PEP 562), as in :mod:`analysis`: ``import
# qualitative`` costs nothing, and spaCy, scikit-learn or lxml load only with the module that needs
# them (the service imports this package at start-up and most processes never touch a transcript).
_SOURCES = {
    "Transcript": "transcripts",
    "Turn": "transcripts",
    "load_transcript": "transcripts",
    "paragraph_spans": "transcripts",
    "parse_text": "transcripts",
    "parse_markdown": "transcripts",
    "parse_vtt": "transcripts",
    "parse_srt": "transcripts",
    "parse_docx": "transcripts",
    "VaultIdentifiers": "deid",
    "Replacement": "deid",
    "DeidResult": "deid",
    "deidentify": "deid",
    "deid_recall": "deid",
    "lemma_pipeline": "nlp",
    "lemmatize": "nlp",
    "load_ner_model": "nlp",
    "NERModelNotFound": "nlp",
    "kwic": "search",
    "Code": "codebook",
    "CodeEdit": "codebook",
    "Codebook": "codebook",
    "Coding": "codebook",
    "Memo": "codebook",
    "CodedCorpus": "codebook",
    "codings_frame": "codebook",
    "slugify": "codebook",
    "attribute_codings": "coding",
    "segments": "coding",
    "co_occurrence": "coding",
    "co_occurrence_matrix": "coding",
    "crosstab": "coding",
    "unit_spans": "coding",
    "AutoCoder": "autocode",
    "Suggestion": "autocode",
    "SuggestionLedger": "autocode",
    "suggestions_frame": "autocode",
    "krippendorff_alpha": "agreement",
    "cohens_kappa": "agreement",
    "kappa_from_table": "agreement",
    "percent_agreement": "agreement",
    "unit_matrix": "agreement",
    "agreement": "agreement",
    "disagreements": "agreement",
    "export_qdc": "refi",
    "import_qdc": "refi",
    "export_qdpx": "refi",
    "import_qdpx": "refi",
    "quantitise": "mixed",
    "hedges_g": "mixed",
    "hedges_g_from_stats": "mixed",
    "outcome_change": "mixed",
    "joint_display": "mixed",
    "plot_joint_display": "mixed",
}


def __getattr__(name: str):
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'qualitative' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(ModuleType):
    """Loading a submodule binds it to the package's name for it; a public function named like its
    module (``agreement``) keeps that name instead, as an eager ``from .x import x`` would."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and _SOURCES.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


__all__ = list(_SOURCES)
