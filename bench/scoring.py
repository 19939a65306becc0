"""Scoring throughput: score_frame on an export of 100,000 responses.

Prints the time of ``instruments.score_frame`` for several instruments and the ratio against a baseline
measured in the same run: a plain pandas row sum of the same item columns (no validation, missing-data
rules, bands or long output). The single-response ``score()`` path is timed on a sample for comparison.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import instruments  # noqa: E402

N = 100_000


def frame(inst, n, rng):
    df = pd.DataFrame({"participant": np.arange(n), "wave": rng.integers(0, 4, n)})
    for it in inst.items:
        if not it.options:
            continue
        col = rng.choice(np.array([o.code for o in it.options], dtype=float), n)
        col[rng.random(n) < 0.05] = np.nan
        df[it.code] = col
    return df


def best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(1)
    print(f"score_frame on {N:,} responses (best of 3)")
    print(f"{'instrument':<12}{'scales':>7}{'peerlens s':>12}{'baseline s':>12}{'ratio':>8}")
    for code in ("phq9", "gad7", "pam13", "hls_eu_q16", "lsns18"):
        inst = instruments.get(code)
        df = frame(inst, N, rng)
        item_cols = [it.code for it in inst.items if it.scored and it.code in df.columns]
        ours = best(lambda inst=inst, df=df: instruments.score_frame(inst, df, id_cols=["participant", "wave"]))
        base = best(lambda df=df, item_cols=item_cols: df[item_cols].sum(axis=1, min_count=1))
        print(f"{code:<12}{len(inst.scales):>7}{ours:>12.3f}{base:>12.4f}{ours / base:>8.1f}x")
    inst = instruments.get("phq9")
    sample = frame(inst, 2_000, rng)
    records = [
        {k: (None if pd.isna(v) else v) for k, v in r.items() if k.startswith("phq9_")}
        for r in sample.to_dict("records")
    ]
    one = best(lambda: [instruments.score(inst, r) for r in records], repeat=1) / len(records)
    print(
        f"score() one response at a time: {one * 1e6:.0f} us/response "
        f"(~{one * N:.1f} s for {N:,}; use score_frame for exports)"
    )


if __name__ == "__main__":
    main()
