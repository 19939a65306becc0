"""analysis.flow.participant_flow: counts worked out by hand for small cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.flow import BUCKETS, participant_flow

WAVES = pd.DataFrame({"wave": ["baseline", "m6", "m12"], "offset_days": [0, 180, 365]})


def _people(rows):
    cols = [
        "participant",
        "arm",
        "status",
        "status_day",
        "status_reason",
        "intervention_stopped_day",
        "intervention_stopped_reason",
        "follow_up_stopped_day",
        "follow_up_stopped_reason",
        "consent_withdrawn_day",
        "consent_withdrawn_reason",
        "voided",
    ]
    return pd.DataFrame(rows, columns=cols)


def _visits(responded: dict[str, list[str]], due: dict[str, list[str]]):
    rows = []
    for p in set(responded) | set(due):
        for w in WAVES["wave"]:
            rows.append(
                {
                    "participant": p,
                    "wave": w,
                    "responded": w in responded.get(p, []),
                    "due": w in due.get(p, []) or w in responded.get(p, []),
                }
            )
    return pd.DataFrame(rows)


def test_buckets_partition_each_arm_and_reasons_are_counted():
    n = np.nan
    people = _people(
        [
            ["p1", "peer", "active", n, None, n, None, n, None, n, None, False],
            ["p2", "peer", "withdrawn", 200, "moved", 30, "", 200, "moved", n, None, False],
            ["p3", "peer", "withdrawn", 100, "moved", 40, None, 100, "moved", n, None, False],
            ["p4", "peer", "lost_to_follow_up", 300, "unreachable", n, None, n, None, n, None, False],
            ["p5", "usual", "withdrawn", 50, "no", n, None, n, None, 50, "does not want data used", False],
            ["p6", "usual", "active", n, None, n, None, n, None, n, None, True],
            ["p7", None, "active", n, None, n, None, n, None, n, None, False],
        ]
    )
    visits = _visits(
        {
            "p1": ["baseline", "m6"],
            "p2": ["baseline", "m6"],
            "p3": ["baseline"],
            "p4": ["baseline", "m6"],
            "p5": ["baseline"],
            "p6": ["baseline"],
            "p7": [],
        },
        {"p1": ["m12"], "p2": [], "p3": ["m6", "m12"], "p4": ["m12"], "p5": ["m6"], "p7": ["baseline"]},
    )
    flow = participant_flow(people, WAVES, visits, arms=["peer", "usual", "online"])
    assert (flow["enrolled"], flow["voided"]) == (7, 1)
    arms = {a["arm"]: a for a in flow["arms"]}
    assert [a["arm"] for a in flow["arms"]] == ["peer", "usual", "online", None]
    peer = arms["peer"]
    assert peer["allocated"] == 4
    # p2's reason is blank, p3's missing: both "not given"
    assert peer["discontinued_intervention"] == {"n": 2, "reasons": {"not given": 2}}
    by_wave = {w["wave"]: w for w in peer["waves"]}
    m6, m12 = by_wave["m6"], by_wave["m12"]
    # m6 (day 180): p1, p2, p4 answered; p3 stopped follow-up on day 100
    assert m6["responded"] == 3 and m6["withdrew"] == {"n": 1, "reasons": {"moved": 1}}
    # m12 (day 365): p1 missed (due, no data); p2 and p3 withdrew; p4 lost on day 300
    assert (m12["responded"], m12["missed"], m12["withdrew"]["n"]) == (0, 1, 2)
    assert m12["lost_to_follow_up"] == {"n": 1, "reasons": {"unreachable": 1}}
    usual = arms["usual"]
    assert usual["allocated"] == 1  # p6 was voided
    assert all(w["data_withdrawn"]["n"] == 1 and w["responded"] == 0 for w in usual["waves"])
    assert usual["analysed"] == {"n": 0, "excluded": {"n": 1, "reasons": {"consent for use of data withdrawn": 1}}}
    assert arms["online"]["allocated"] == 0 and all(
        sum(w[b] if isinstance(w[b], int) else w[b]["n"] for b in BUCKETS) == 0 for w in arms["online"]["waves"]
    )
    unallocated = arms[None]
    assert unallocated["waves"][0]["missed"] == 1 and unallocated["waves"][1]["not_yet_due"] == 1
    for arm in flow["arms"]:
        for w in arm["waves"]:
            assert sum(w[b] if isinstance(w[b], int) else w[b]["n"] for b in BUCKETS) == arm["allocated"]


def test_an_empty_study_has_its_arms_with_zero_counts():
    flow = participant_flow(
        _people([]), WAVES, pd.DataFrame(columns=["participant", "wave", "responded", "due"]), arms=["a", "b"]
    )
    assert flow["enrolled"] == 0 and [a["allocated"] for a in flow["arms"]] == [0, 0]
    assert flow["arms"][0]["analysed"] == {"n": 0, "excluded": {"n": 0, "reasons": {}}}
