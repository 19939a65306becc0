"""Lemma-aware keyword-in-context search across transcripts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from spacy.language import Language
from spacy.matcher import PhraseMatcher

from .nlp import lemma_pipeline
from .transcripts import Transcript, paragraph_spans

__all__ = ["kwic"]

_COLUMNS = ["transcript", "participant", "wave", "start", "end", "left", "match", "right", "speaker", "query"]


def kwic(
    transcripts: Iterable[Transcript],
    query: str | Sequence[str],
    *,
    lemma: bool = True,
    window: int = 40,
    nlp: Language | None = None,
) -> pd.DataFrame:
    """Keyword-in-context search.

    Parameters
    ----------
    transcripts : iterable of Transcript
    query : str or list of str
        A word or phrase (or several). With ``lemma=True`` every inflection
        matches: "support group" finds "supported groups".
    lemma : bool
        Match on lemmas (spaCy lookup lemmatizer); otherwise on lower-cased text.
    window : int
        Characters of context on each side (cut at line breaks).

    Returns
    -------
    DataFrame
        transcript, participant, wave, start, end, left, match, right, speaker, query;
        offsets refer to each transcript's text.

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> t = parse_text("P01: The groups helped. One group met weekly.", id="t1")
    >>> kwic([t], "group")["match"].tolist()
    ['groups', 'group']
    """
    queries = [query] if isinstance(query, str) else list(query)
    nlp = nlp or lemma_pipeline()
    matcher = PhraseMatcher(nlp.vocab, attr="LEMMA" if lemma else "LOWER")
    patterns = list(nlp.pipe(queries)) if lemma else [nlp.make_doc(q) for q in queries]
    for q, p in zip(queries, patterns, strict=True):
        matcher.add(q, [p])
    transcripts = list(transcripts)

    def units():
        for t in transcripts:
            for a, b in paragraph_spans(t.text):
                yield t.text[a:b], (t, a)

    rows = []
    strings = nlp.vocab.strings
    for doc, (t, offset) in nlp.pipe(units(), as_tuples=True):
        for match_id, s, e in matcher(doc):
            span = doc[s:e]
            start, end = offset + span.start_char, offset + span.end_char
            left = t.text[max(0, start - window) : start].split("\n")[-1]
            right = t.text[end : end + window].split("\n")[0]
            rows.append(
                {
                    "transcript": t.id,
                    "participant": t.participant,
                    "wave": t.wave,
                    "start": start,
                    "end": end,
                    "left": left,
                    "match": t.text[start:end],
                    "right": right,
                    "speaker": t.speaker_at(start),
                    "query": strings[match_id],
                }
            )
    df = pd.DataFrame(rows, columns=_COLUMNS)
    return df.sort_values(["transcript", "start"], kind="stable").reset_index(drop=True)
