"""The demo's process evaluation: dose varies, comes from the records, and goes with outcomes."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import spearmanr
from sqlmodel import Session, select

from api.db import make_engine
from api.migrate import upgrade


@pytest.mark.slow
def test_demo_dose_varies_and_relates_to_outcome(tmp_path):
    from analysis.synthetic import simulate_cohort
    from api.delivery.dose import participant_dose
    from api.delivery.models import DeliverySession, ForumActivity, GroupMembership, PeerSupporterContact
    from api.demo import ARMS, SITES, WAVES, load_demo

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    n, seed = 90, 4242
    result = load_demo(url, n_participants=n, seed=seed)
    assert result.delivery is not None and result.delivery["switched_group"] == 1
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            dose = pd.DataFrame(participant_dose(s, result.study_id))
            statuses = {r for r in s.exec(select(DeliverySession.status)).all()}
            assert {"delivered", "cancelled"} <= statuses
            assert s.exec(select(ForumActivity.id)).first() is not None
            assert len(s.exec(select(PeerSupporterContact.supporter_id)).all()) == 6
            memberships = s.exec(select(GroupMembership.participant_id)).all()
            assert sum(memberships.count(p) > 1 for p in set(memberships)) == 1  # one participant switched group
            closed = s.exec(select(GroupMembership).where(GroupMembership.left_on.is_not(None))).all()
            assert len(closed) > 1  # the switch, and those who withdrew or were lost
    finally:
        engine.dispose()
    treated = dose[dose["arm"].isin(["group", "online"])]
    assert treated["sessions_attended"].std() > 1.5 and treated["sessions_attended"].max() >= 8
    assert (dose[dose["arm"] == "usual_care"]["sessions_attended"] == 0).all()
    assert treated["adherent"].between(0, 1).all() and 0.2 < treated["adherent"].mean() < 0.9
    # the same cohort, simulated again: latent PAM-13 change baseline -> 12 months
    cohort = simulate_cohort(
        n_participants=n,
        seed=seed,
        sites=[c for c, _ in SITES],
        arms=[(a, k) for a, _, k in ARMS],
        waves=[(w, o) for w, o, _, _ in WAVES],
    )
    lat = cohort.latent.pivot_table(index="participant", columns="wave", values="pam_activation")
    change = (lat["m12"] - lat["baseline"]).rename("change")
    joined = treated.set_index("study_code").join(change, how="inner")
    rho, p = spearmanr(joined["sessions_attended"], joined["change"])
    assert rho > 0.2 and p < 0.05, (rho, p)
