"""Published formulas behind the clinical measures: unit conversions and derived values.

The clinical measures (HbA1c, anthropometry, blood pressure and heart rate, the 6-minute walk) are
instruments like the questionnaires (``definitions/*.yaml``): staff enter the value in the unit they
have, each unit is an item with its own plausibility range, and a ``convert`` scale stores the value
in one canonical unit. Values that need more than one input (BMI, the predicted walking distance)
are ``derived`` scales naming a formula of :data:`FORMULAS`. Everything here works on numpy arrays
(NaN = not available) so that one response and a whole cohort are scored by the same code.

Sources
-------
* HbA1c: the IFCC–NGSP master equation, NGSP (%) = 0.09148 × IFCC (mmol/mol) + 2.152
  (Hoelzel W et al. Clin Chem 2004;50:166-174; the NGSP/IFCC conversion table).
* 6-minute walk: Enright PL, Sherrill DL. Reference equations for the six-minute walk in healthy
  adults. Am J Respir Crit Care Med 1998;158:1384-1387 (men and women aged 40-80; height in cm,
  weight in kg, age in years; lower limit of normal = prediction − 153 m (men), − 139 m (women)).
* BMI: weight (kg) / height (m)² (WHO).
* Pounds and feet are the international yard and pound (1959): 1 lb = 0.45359237 kg, 1 ft = 0.3048 m.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

#: HbA1c master equation: NGSP % = SLOPE × IFCC mmol/mol + INTERCEPT.
NGSP_SLOPE = 0.09148
NGSP_INTERCEPT = 2.152
KG_PER_LB = 0.45359237
M_PER_FT = 0.3048
CM_PER_IN = 2.54

MALE, FEMALE = 1, 2  # codes of the ``sex`` item of the 6-minute walk definition


def ifcc_from_ngsp(pct):
    """HbA1c in mmol/mol (IFCC) from % (NGSP/DCCT), by the master equation.

    Examples
    --------
    >>> round(float(ifcc_from_ngsp(7.0)))  # the NGSP/IFCC table: 7.0 % = 53 mmol/mol
    53
    """
    return (np.asarray(pct, dtype=float) - NGSP_INTERCEPT) / NGSP_SLOPE


def ngsp_from_ifcc(mmol):
    """HbA1c in % (NGSP/DCCT) from mmol/mol (IFCC), by the master equation.

    Examples
    --------
    >>> round(float(ngsp_from_ifcc(48)), 1)  # 48 mmol/mol, the diagnostic threshold, is 6.5 %
    6.5
    """
    return NGSP_SLOPE * np.asarray(mmol, dtype=float) + NGSP_INTERCEPT


def bmi(weight, height):
    """Body-mass index (kg/m²) from weight in kg and height in cm.

    Examples
    --------
    >>> round(float(bmi(70, 175)), 1)
    22.9
    """
    h = np.asarray(height, dtype=float) / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(weight, dtype=float) / (h * h)


def six_minute_walk_predicted(sex, age, height, weight):
    """Predicted 6-minute walk distance in metres (Enright & Sherrill 1998).

    Men: 7.57 × height − 5.02 × age − 1.76 × weight − 309; women: 2.11 × height − 2.29 × weight
    − 5.78 × age + 667 (height cm, weight kg, age years). ``sex`` is 1 (male) or 2 (female); any
    other code gives NaN.

    Examples
    --------
    >>> round(float(six_minute_walk_predicted(1, 60, 175, 80)), 2)
    573.75
    >>> round(float(six_minute_walk_predicted(2, 60, 160, 65)), 2)
    508.95
    """
    sex = np.asarray(sex, dtype=float)
    age, height, weight = (np.asarray(x, dtype=float) for x in (age, height, weight))
    men = 7.57 * height - 5.02 * age - 1.76 * weight - 309.0
    women = 2.11 * height - 2.29 * weight - 5.78 * age + 667.0
    pred = np.where(sex == MALE, men, np.where(sex == FEMALE, women, np.nan))
    # A prediction of no distance at all means the person is far outside the population the
    # equation was derived in (healthy adults aged 40-80): no prediction rather than a negative one.
    return np.where(pred > 0, pred, np.nan)


def six_minute_walk_lower_limit(sex, age, height, weight):
    """Lower limit of normal of the 6-minute walk distance (prediction − 153 m men, − 139 m women)."""
    sex = np.asarray(sex, dtype=float)
    pred = six_minute_walk_predicted(sex, age, height, weight)
    return pred - np.where(sex == MALE, 153.0, 139.0)


def percent(value, reference):
    """``100 × value / reference`` (e.g. percent of the predicted walking distance)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.asarray(value, dtype=float) / np.asarray(reference, dtype=float)


#: Formulas a ``derived`` scale may name, with the inputs each takes (argument -> meaning).
FORMULAS: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "bmi": (bmi, ("weight", "height")),
    "enright_sherrill_1998": (six_minute_walk_predicted, ("sex", "age", "height", "weight")),
    "enright_sherrill_1998_lln": (six_minute_walk_lower_limit, ("sex", "age", "height", "weight")),
    "percent": (percent, ("value", "reference")),
}


def derive(formula: str, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a named formula on arrays of its inputs (NaN where any input is missing)."""
    fn, args = FORMULAS[formula]
    missing = [a for a in args if a not in inputs]
    if missing:
        raise KeyError(f"formula {formula} needs {missing}")
    arrays = [np.asarray(inputs[a], dtype=float) for a in args]
    value = np.asarray(fn(*arrays), dtype=float)
    bad = np.zeros(value.shape, dtype=bool)
    for a in arrays:
        bad |= np.isnan(a)
    return np.where(bad | ~np.isfinite(value), np.nan, value)


def convert(factors: Mapping[str, tuple[float, float]], columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The canonical value: ``a × answer + b`` of the first item (in ``factors`` order) answered."""
    value = np.full(n, np.nan)
    for item, (a, b) in factors.items():
        x = np.asarray(columns.get(item, np.full(n, np.nan)), dtype=float)
        value = np.where(np.isnan(value) & ~np.isnan(x), a * x + b, value)
    return value
