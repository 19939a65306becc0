"""Shared fixtures: spaCy pipelines are built once per test session."""

from __future__ import annotations

import random

import pytest
import spacy
from spacy.training import Example

from qualitative.nlp import lemma_pipeline


@pytest.fixture(scope="session")
def nlp():
    return lemma_pipeline()


# Names, places and organisations absent from the shipped rule lists, so that
# only a statistical model can find them.
NER_PEOPLE = ["Ximena Oduya", "Thandiwe", "Obadiah Quist", "Zebedee", "Ingrid Vasquez", "Kofi Mensah"]
NER_PLACES = ["Tamworth", "Penzance", "Ulverston", "Kilmarnock"]
NER_ORGS = ["Brightwater Trust", "Lantern Collective", "Harbourside Health"]
_TEMPLATES = [
    ("I spoke to {P} about my sugar levels.", ["P"]),
    ("{P} came round on Sunday and we talked.", ["P"]),
    ("My neighbour {P} drove me to {G}.", ["P", "G"]),
    ("We moved from {G} when I was young.", ["G"]),
    ("The group at {O} was really welcoming.", ["O"]),
    ("{P} from {O} rang me last week.", ["P", "O"]),
    ("I met {P} at the session in {G}.", ["P", "G"]),
    ("It was in {D} that I was diagnosed.", ["D"]),
    ("{P} said the walks in {G} helped her.", ["P", "G"]),
]
_DATES = ["March 2019", "12 June 2020", "October 2018"]


def _ner_examples(nlp, n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        template, slots = rng.choice(_TEMPLATES)
        text, ents = "", []
        parts = template.replace("{", "\x00{").replace("}", "}\x00").split("\x00")
        for part in parts:
            if part in ("{P}", "{G}", "{O}", "{D}"):
                value = {
                    "{P}": rng.choice(NER_PEOPLE),
                    "{G}": rng.choice(NER_PLACES),
                    "{O}": rng.choice(NER_ORGS),
                    "{D}": rng.choice(_DATES),
                }[part]
                label = {"{P}": "PERSON", "{G}": "GPE", "{O}": "ORG", "{D}": "DATE"}[part]
                ents.append((len(text), len(text) + len(value), label))
                text += value
            else:
                text += part
        # Half the examples carry a speaker label, as transcript lines do.
        if rng.random() < 0.5:
            prefix = rng.choice(["P01: ", "P12: ", "Interviewer: ", "Well, ", "Then "])
            text = prefix + text
            ents = [(s + len(prefix), e + len(prefix), label) for s, e, label in ents]
        out.append(Example.from_dict(nlp.make_doc(text), {"entities": ents}))
    return out


@pytest.fixture(scope="session")
def tiny_ner_model(tmp_path_factory):
    """A tiny NER pipeline trained here (fixed seed) and saved to disk.

    It stands in for ``en_core_web_sm`` so that the statistical path of
    de-identification runs through the real loading code.
    """
    spacy.util.fix_random_seed(7)
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner")
    for label in ("PERSON", "GPE", "ORG", "DATE"):
        ner.add_label(label)
    examples = _ner_examples(nlp, 48, seed=7)
    optimizer = nlp.initialize(lambda: examples)
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(examples)
        for i in range(0, len(examples), 8):
            nlp.update(examples[i : i + 8], sgd=optimizer, drop=0.1)
    path = tmp_path_factory.mktemp("models") / "tiny_ner"
    nlp.to_disk(path)
    return path
