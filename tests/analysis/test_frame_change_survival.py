"""Loading the long frame, change scores, responders, retention and the report."""

import numpy as np
import pandas as pd
import pytest

from analysis import attrition, change, survival
from analysis.frame import baseline, load_long, wide
from analysis.report import run_all


def _tiny():
    rows = []
    pre = {"P1": 12, "P2": 15, "P3": 9, "P4": 20, "C1": 14, "C2": 10, "C3": 16, "C4": 12}
    post = {"P1": 6, "P2": 9, "P3": 8, "P4": 13, "C1": 13, "C2": 11, "C3": 10, "C4": 12}
    for p in pre:
        arm = "group" if p.startswith("P") else "usual_care"
        kind = "intervention" if arm == "group" else "control"
        for wave, off, v in (("baseline", 0, pre[p]), ("m6", 180, post[p])):
            rows.append(
                {
                    "participant": p,
                    "site": "north",
                    "arm": arm,
                    "arm_kind": kind,
                    "wave": wave,
                    "wave_offset": off,
                    "days": off,
                    "instrument": "phq9",
                    "scale": "phq9",
                    "value": v,
                    "status": "completed",
                    "status_days": np.nan,
                }
            )
    return pd.DataFrame(rows)


def test_load_long_names_the_bad_column(tmp_path):
    df = _tiny()
    with pytest.raises(ValueError, match="'value'"):
        load_long(df.drop(columns="value"))
    bad = df.astype({"value": object})
    bad.loc[0, "value"] = "twelve"
    with pytest.raises(ValueError, match="column 'value'.*twelve"):
        load_long(bad)
    bad = df.copy()
    bad["out_of_window"] = "maybe"
    with pytest.raises(ValueError, match="out_of_window"):
        load_long(bad)
    p = tmp_path / "long.csv"
    df.assign(out_of_window="false", completed_at="2026-01-02T10:00:00Z").to_csv(p, index=False)
    back = load_long(p)
    assert back["value"].dtype == float and back["out_of_window"].dtype == bool
    assert str(back["completed_at"].dt.tz) == "UTC"
    assert back["participant"].tolist()[:2] == ["P1", "P1"]


def test_wide_and_baseline_views():
    w = wide(_tiny(), "phq9")
    assert list(w.columns) == ["baseline", "m6"] and w.loc["P1", "m6"] == 6
    b = baseline(_tiny())
    assert b.set_index("participant").loc["C3", "phq9"] == 16


def test_responders_use_phq9_mcid_and_direction():
    r = change.responders(_tiny(), "phq9", post="m6").set_index("arm")
    # Falls of >= 5: P1 (6), P2 (6), P4 (7); controls: C3 (6)
    assert r.loc["group", "mcid"] == 5.0 and r.loc["group", "improved"] == 3
    assert r.loc["usual_care", "improved"] == 1
    assert r.loc["group", "risk_difference"] == pytest.approx(0.75 - 0.25)
    with pytest.raises(ValueError, match="MCID"):
        change.responders(_tiny().assign(scale="custom"), "custom", post="m6")


def test_effect_sizes_hand_computed():
    es = change.effect_sizes(_tiny(), "phq9", post="m6")
    within = es[(es["comparison"] == "within") & (es["arm"] == "group")].iloc[0]
    pre, post = np.array([12, 15, 9, 20.0]), np.array([6, 9, 8, 13.0])
    d_av = (post.mean() - pre.mean()) / np.sqrt((pre.var(ddof=1) + post.var(ddof=1)) / 2)
    assert within["estimate"] == pytest.approx(d_av, abs=1e-9)
    between = es[es["comparison"] == "between"].iloc[0]
    a, b = post - pre, np.array([-1, 1, -6, 0.0])
    sp = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    g = (a.mean() - b.mean()) / sp * (1 - 3 / (4 * 6 - 1))
    assert between["estimate"] == pytest.approx(g, abs=1e-6)
    assert between["ci_lower"] < between["estimate"] < between["ci_upper"]


def test_dropout_frame_events_and_censoring(long60):
    d = survival.dropout_frame(long60).set_index("participant")
    dropped = d["status"].isin(["withdrawn", "lost_to_follow_up"])
    assert (d.loc[dropped, "event"] == 1).all() and (d.loc[~dropped, "event"] == 0).all()
    assert (d.loc[dropped, "duration"] == d.loc[dropped, "status_days"]).all()
    km = survival.km_table(d.reset_index(), by="arm")
    assert km.groupby("group")["survival"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_dropout_relates_to_baseline_isolation(long300):
    t = attrition.dropout_by_baseline(long300, scales=["lsns6"]).iloc[0]
    assert t["mean_dropout"] < t["mean_retained"] and t["p"] < 0.05
    cox = survival.cox_dropout(long300, covariates=["arm"], baseline_scales=["lsns6"]).set_index("term")
    assert cox.loc["lsns6", "hr"] < 1 and cox.loc["lsns6", "p"] < 0.05


def test_completion_table(long60):
    c = attrition.completion(long60, by=["arm", "site"])
    base = c[c["wave"] == "baseline"]
    assert (base["completed"] == base["enrolled"]).all()
    assert c["completed_pct"].between(0, 100).all()


def test_time_to_threshold_excludes_those_already_there(long300):
    t = survival.time_to_threshold(long300, "phq9", 10, "below")
    b = long300[(long300["scale"] == "phq9") & (long300["wave"] == "baseline")].set_index("participant")["value"]
    assert (b.loc[t["participant"]] >= 10).all()
    assert t["event"].between(0, 1).all() and t["event"].sum() > 0
    lvl = survival.time_to_threshold(long300, "pam13_activation", 3, "above", column="level")
    assert len(lvl) > 0


@pytest.mark.slow  # every model and plot of the report
def test_run_all_writes_tables_plots_and_report(long60, tmp_path):
    paths = run_all(long60, tmp_path, mcids={"pam13_activation": 4}, fmt="svg")
    assert paths["report"].read_text().startswith("# Peerlens analysis report")
    fixed = pd.read_csv(paths["table:trajectory_phq9_fixed"])
    assert {"term", "estimate", "se", "ci_lower", "ci_upper", "p"} <= set(fixed.columns)
    assert paths["plot:trajectory_pam13_activation"].read_text().lstrip().startswith("<?xml")
    resp = pd.read_csv(paths["table:responders"])
    assert set(resp["scale"]) >= {"phq9", "gad7", "pam13_activation"}
