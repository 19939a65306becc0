"""The demo's fidelity data: two evaluators, some sessions double-rated, agreement as in a real study,
adaptations feeding TIDieR item 10."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score
from sqlmodel import Session, select

from api.db import make_engine


@pytest.mark.slow
def test_demo_ratings_double_rated_and_adaptations(demo_database):
    # load_demo(url, n_participants=60) on a migrated SQLite database, loaded once per run (tests/conftest.py)
    with demo_database("sqlite", 60, 20261125) as (url, result):
        _check_ratings_and_adaptations(url, result)


def _check_ratings_and_adaptations(url, result):
    from api.auth.service import Actor
    from api.fidelity import frames
    from api.fidelity.models import Adaptation
    from api.fidelity.tidier import modifications
    from api.studies.models import Arm, Study

    assert result.fidelity is not None and result.fidelity["ratings"] >= 20
    assert "evaluator" in result.tokens
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            study = s.get(Study, result.study_id)
            frame, answers = frames.ratings_frame(s, study, Actor.system())
            items = frames.items_long(frame, answers)
            assert len(s.exec(select(Adaptation)).all()) == result.fidelity["adaptations"] == 4
            group = s.exec(select(Arm).where(Arm.study_id == study.id, Arm.code == "group")).one()
            assert modifications(s, group)["adaptations"] == 4
    finally:
        engine.dispose()
    per_session = frame.groupby("session")["rater"].nunique()
    assert (per_session == 2).sum() >= 3 and frame["rater"].nunique() == 2
    assert frame["total"].between(0, 100).all() and frame["total"].std() > 3  # fidelity varies
    pairs = (
        items.dropna(subset=["value"]).pivot_table(index=["session", "item"], columns="rater", values="value").dropna()
    )
    kappa = cohen_kappa_score(pairs.iloc[:, 0], pairs.iloc[:, 1], weights="quadratic")
    assert 0.4 < kappa < 0.98, kappa
