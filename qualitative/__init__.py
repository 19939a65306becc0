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

from .agreement import (
    agreement,
    cohens_kappa,
    disagreements,
    kappa_from_table,
    krippendorff_alpha,
    percent_agreement,
    unit_matrix,
)
from .autocode import AutoCoder, Suggestion, SuggestionLedger, suggestions_frame
from .codebook import Code, Codebook, CodedCorpus, CodeEdit, Coding, Memo, codings_frame, slugify
from .coding import attribute_codings, co_occurrence, co_occurrence_matrix, crosstab, segments, unit_spans
from .deid import DeidResult, Replacement, VaultIdentifiers, deid_recall, deidentify
from .mixed import (
    hedges_g,
    hedges_g_from_stats,
    joint_display,
    outcome_change,
    plot_joint_display,
    quantitise,
)
from .nlp import NERModelNotFound, lemma_pipeline, lemmatize, load_ner_model
from .refi import export_qdc, export_qdpx, import_qdc, import_qdpx
from .search import kwic
from .transcripts import (
    Transcript,
    Turn,
    load_transcript,
    paragraph_spans,
    parse_docx,
    parse_markdown,
    parse_srt,
    parse_text,
    parse_vtt,
)

__all__ = [
    "Transcript",
    "Turn",
    "load_transcript",
    "paragraph_spans",
    "parse_text",
    "parse_markdown",
    "parse_vtt",
    "parse_srt",
    "parse_docx",
    "VaultIdentifiers",
    "Replacement",
    "DeidResult",
    "deidentify",
    "deid_recall",
    "lemma_pipeline",
    "lemmatize",
    "load_ner_model",
    "NERModelNotFound",
    "kwic",
    "Code",
    "CodeEdit",
    "Codebook",
    "Coding",
    "Memo",
    "CodedCorpus",
    "codings_frame",
    "slugify",
    "attribute_codings",
    "segments",
    "co_occurrence",
    "co_occurrence_matrix",
    "crosstab",
    "unit_spans",
    "AutoCoder",
    "Suggestion",
    "SuggestionLedger",
    "suggestions_frame",
    "krippendorff_alpha",
    "cohens_kappa",
    "kappa_from_table",
    "percent_agreement",
    "unit_matrix",
    "agreement",
    "disagreements",
    "export_qdc",
    "import_qdc",
    "export_qdpx",
    "import_qdpx",
    "quantitise",
    "hedges_g",
    "hedges_g_from_stats",
    "outcome_change",
    "joint_display",
    "plot_joint_display",
]
