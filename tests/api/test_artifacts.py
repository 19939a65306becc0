"""The artefact store (:mod:`api.artifacts`) and the JSON helper (:mod:`api.jsonable`), without HTTP."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from api.artifacts import ArtifactStore, covers_only_own_sites, safe_name, site_scope
from api.auth.service import Actor
from api.errors import NotFound
from api.jsonable import jsonable, records

SITES = {"north": 10, "south": 11}
ADMIN = Actor(user_id=1, role="admin")
ANALYST = Actor(user_id=2, role="analyst")
NORTH = Actor(user_id=3, role="coordinator", site_ids=frozenset({10}))
BOTH = Actor(user_id=4, role="coordinator", site_ids=frozenset({10, 11}))


class _Figure:
    def savefig(self, path, dpi, format):
        path.write_bytes(b"<svg></svg>" if format == "svg" else b"\x89PNG\r\n\x1a\n")


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


def test_layout_names_and_urls(store):
    run = store.new_run("analyses", 7, {"kind": "power", "sites": None})
    assert run.folder == store.root / "analyses" / "7" / run.run_id and len(run.run_id) == 32
    name = run.save_figure(_Figure(), "km dropout/by ../arm", "svg")
    assert name == "km_dropout_by____arm.svg" and (run.folder / name).is_file()
    assert run.url(name) == f"/studies/7/analyses/runs/{run.run_id}/{name}"
    manifest = json.loads((run.folder / "run.json").read_text())
    assert manifest == {"run_id": run.run_id, "study_id": 7, "kind": "power", "sites": None}
    with pytest.raises(ValueError):
        run.save_figure(_Figure(), "x", "pdf")
    with pytest.raises(ValueError):
        store.new_run("elsewhere", 7)


def test_paths_never_leave_the_run_folder(store):
    run = store.new_run("qualitative", 3, {"sites": None})
    name = run.save_figure(_Figure(), "joint_display", "png")
    assert store.file("qualitative", 3, run.run_id, name, ANALYST, SITES) == (run.folder / name).resolve()
    (store.root / "qualitative" / "3" / "secret.png").write_bytes(b"no")
    for run_id, filename in (
        (run.run_id, "../secret.png"),
        (run.run_id, "run.json"),
        (run.run_id, "missing.png"),
        ("../3", name),
        ("0" * 32, name),
        (run.run_id.upper(), name),
    ):
        with pytest.raises(NotFound):
            store.file("qualitative", 3, run_id, filename, ADMIN, SITES)
    with pytest.raises(NotFound):  # the same run under another study
        store.file("qualitative", 4, run.run_id, name, ADMIN, SITES)
    bare = store.new_run("analyses", 3)  # no manifest (the command line's report folders): never served
    bare_name = bare.save_figure(_Figure(), "x", "png")
    with pytest.raises(NotFound):
        store.file("analyses", 3, bare.run_id, bare_name, ADMIN, SITES)


def test_site_scoped_readers_see_runs_of_their_own_sites_only(store):
    whole = store.new_run("analyses", 1, {"sites": None})
    north = store.new_run("analyses", 1, {"sites": ["north"]})
    both = store.new_run("analyses", 1, {"sites": ["north", "south"]})
    for run in (whole, north, both):
        run.save_figure(_Figure(), "plot", "png")
    seen = {
        who: [covers_only_own_sites(actor, r, SITES) for r in (None, ["north"], ["north", "south"])]
        for who, actor in (("admin", ADMIN), ("analyst", ANALYST), ("north", NORTH), ("both", BOTH))
    }
    assert seen == {
        "admin": [True, True, True],
        "analyst": [True, True, True],
        "north": [False, True, False],
        "both": [False, True, True],
    }
    store.file("analyses", 1, north.run_id, "plot.png", NORTH, SITES)
    for run in (whole, both):
        with pytest.raises(NotFound):
            store.file("analyses", 1, run.run_id, "plot.png", NORTH, SITES)
    assert site_scope(NORTH, SITES) == ["north"] and site_scope(ANALYST, SITES) is None
    assert site_scope(ADMIN, SITES, ["south"]) == ["south"]
    assert safe_name("a b/c") == "a_b_c" and len(safe_name("x" * 500)) == 140


def test_jsonable_and_records():
    assert jsonable(
        {
            1: np.int64(3),
            "f": np.float32(0.5),
            "nan": float("nan"),
            "inf": np.inf,
            "na": pd.NA,
            "nat": pd.NaT,
            "b": np.bool_(True),
            "d": date(2026, 1, 2),
            "ts": pd.Timestamp("2026-01-05 10:30", tz="UTC"),
            "nested": [(1, np.nan), {"s": {2}}],
            "arr": np.array([1.0, np.nan]),
        }
    ) == {
        "1": 3,
        "f": 0.5,
        "nan": None,
        "inf": None,
        "na": None,
        "nat": None,
        "b": True,
        "d": "2026-01-02",
        "ts": "2026-01-05T10:30:00+00:00",
        "nested": [[1, None], {"s": [2]}],
        "arr": [1.0, None],
    }
    df = pd.DataFrame(
        {
            "arm": pd.Categorical(["a", "b"]),
            "n": pd.array([1, None], dtype="Int64"),
            "x": [np.nan, 2.5],
            "quotes": [["one", "two"], []],
        }
    )
    rows = records(df)
    assert rows == [
        {"arm": "a", "n": 1, "x": None, "quotes": ["one", "two"]},
        {"arm": "b", "n": None, "x": 2.5, "quotes": []},
    ]
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    assert records(None) == [] and records(df.iloc[0:0]) == []
    assert math.isclose(records(pd.DataFrame({"v": [np.float64(1 / 3)]}))[0]["v"], 1 / 3)
