"""Transcripts, codebook, codings, memos and auto-coding suggestions: the qualitative layer over HTTP.

The pure library :mod:`qualitative` does the work (parsing, de-identification, search, agreement,
REFI-QDA, joint displays); this domain stores its inputs and outputs, scopes them by role and site,
and audits every change.
"""
