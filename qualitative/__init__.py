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

import lazy_loader

# Names are loaded from their module on first use (PEP 562), as in :mod:`analysis`: ``import
# qualitative`` costs nothing, and spaCy, scikit-learn or lxml load only with the module that needs
# them (the service imports this package at start-up and most processes never touch a transcript).
_NAMES = {  # submodule -> the names the package takes from it
    "transcripts": [
        "Transcript",
        "Turn",
        "load_transcript",
        "paragraph_spans",
        "parse_text",
        "parse_markdown",
        "parse_vtt",
        "parse_srt",
        "parse_docx",
    ],
    "deid": ["VaultIdentifiers", "Replacement", "DeidResult", "deidentify", "deid_recall"],
    "deid_eval": ["deid_report"],
    "nlp": ["lemma_pipeline", "lemmatize", "load_ner_model", "NERModelNotFound"],
    "search": ["kwic"],
    "codebook": ["Code", "CodeEdit", "Codebook", "Coding", "Memo", "CodedCorpus", "codings_frame", "slugify"],
    "coding": ["attribute_codings", "segments", "co_occurrence", "co_occurrence_matrix", "crosstab", "unit_spans"],
    "autocode": ["AutoCoder", "Suggestion", "SuggestionLedger", "suggestions_frame"],
    "agreement": [
        "krippendorff_alpha",
        "cohens_kappa",
        "kappa_from_table",
        "percent_agreement",
        "unit_matrix",
        "agreement",
        "disagreements",
    ],
    "exchange": ["split_code_paths", "codebook_to_csv", "codebook_from_csv", "read_taguette"],
    "joint": [
        "trajectory_theme_matrix",
        "case_matrix",
        "bh_adjust",
        "adjust_joint_display",
        "joint_display_html",
        "classify_trajectory",
    ],
    "spans": ["character_agreement", "segment_agreement", "unitized_alpha", "unitized_alpha_continuum"],
    "refi": ["export_qdc", "import_qdc", "export_qdpx", "import_qdpx"],
    "mixed": ["quantitise", "hedges_g", "hedges_g_from_stats", "outcome_change", "joint_display", "plot_joint_display"],
}


# ``agreement`` names both a module and its main function: the function keeps the package's name.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs=_NAMES)
