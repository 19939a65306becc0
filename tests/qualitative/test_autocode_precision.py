"""Precision of keyword suggestions at the default (sentence) expansion on a labelled corpus.

Each participant sentence is labelled with the codes a careful coder would apply to it; a
suggestion is *accept-worthy* when its sentence carries the suggested code. The corpus holds the
hits that make keyword coding hard: other people's loneliness, "walked out", "alone" in a time
expression, sugar as food talk versus blood sugar. Precision and recall are printed (run with -s).
"""

from __future__ import annotations

from qualitative.autocode import AutoCoder
from qualitative.codebook import Code, Codebook
from qualitative.transcripts import parse_text

CODEBOOK = Codebook(
    [
        Code("isolation", "Loneliness and isolation", keywords=("lonely", "alone", "isolated", "on my own")),
        Code("activity", "Physical activity", keywords=("walk", "exercise", "swim", "gym")),
        Code("glycaemia", "Blood sugar control", keywords=("blood sugar", "sugars", "hba1c", "glucose")),
    ]
)

# (sentence, codes a careful coder applies)
LABELLED = [
    ("I was so lonely before I found the group.", {"isolation"}),
    ("Most days I sat alone in the flat with the telly on.", {"isolation"}),
    ("I felt isolated after my husband died.", {"isolation"}),
    ("Being on my own all week was the worst part.", {"isolation"}),
    ("Now I don't feel lonely on a Tuesday any more.", {"isolation"}),
    ("My neighbour is lonely too, but she won't come.", set()),
    ("Leave me alone about the biscuits, I told my daughter.", set()),
    ("The nurse said I shouldn't be alone when I check my feet.", set()),
    ("We walk by the canal every Thursday now.", {"activity"}),
    ("I started to exercise a bit, just chair exercises at first.", {"activity"}),
    ("Swimming is easier on my knees, so I swim twice a week.", {"activity"}),
    ("I joined the gym with my sister in March.", {"activity"}),
    ("I walked out of the first session, to be honest.", set()),
    ("Walking to the bus stop takes me ages because of my chest.", {"activity"}),
    ("My blood sugar was all over the place last winter.", {"glycaemia"}),
    ("My sugars have been steadier since the group.", {"glycaemia"}),
    ("The HbA1c came back at 53, which is the best in years.", {"glycaemia"}),
    ("I check my glucose before breakfast now.", {"glycaemia"}),
    ("Alone with my thoughts I used to eat whatever was in the cupboard.", {"isolation"}),
    ("When I walk with the others I forget I'm ill.", {"activity", "isolation"}),
    ("Going to the gym alone scared me, so Sandra came along.", {"activity", "isolation"}),
    ("My glucose meter broke and I felt so alone with it.", {"glycaemia", "isolation"}),
    ("I don't exercise, I never have.", {"activity"}),
    ("We talked about sugars in tea and I felt less on my own.", {"isolation", "glycaemia"}),
    ("The walk-in centre is closer than the surgery.", set()),
]


def test_precision_of_sentence_suggestions_on_a_labelled_corpus():
    text = "\n".join(["Interviewer: Tell me about the last year."] + [f"P01: {s}" for s, _ in LABELLED])
    t = parse_text(text, id="t", participant="P01")
    suggestions = AutoCoder(CODEBOOK).suggest([t])
    label = {s: codes for s, codes in LABELLED}
    worthy = [s for s in suggestions if s.code in label[s.text]]
    wanted = sum(len(c) for _, c in LABELLED)
    precision = len(worthy) / len(suggestions)
    recall = len(worthy) / wanted
    print(
        f"\nsentence suggestions: {len(suggestions)}, accept-worthy {len(worthy)} "
        f"(precision {precision:.2f}); recall {recall:.2f} of {wanted} labelled codings"
    )
    # Every suggestion is a whole sentence of the corpus, and its context is that sentence.
    assert all(s.text in label and s.context == s.text for s in suggestions)
    assert precision >= 0.80
    assert recall >= 0.80


def test_match_expansion_keeps_the_sentence_as_context():
    t = parse_text("P01: It was hard. I felt so lonely before the group! Now it's better.", id="t")
    (s,) = AutoCoder(CODEBOOK, expand="match").suggest([t])
    assert s.text == "lonely" and s.context == "I felt so lonely before the group!"
    (p,) = AutoCoder(CODEBOOK, expand="paragraph").suggest([t])
    assert p.text.startswith("It was hard.") and p.context == s.context
