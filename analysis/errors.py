"""What the library's fitters raise when the data cannot support a model.

Too few participants, a singular design, no convergence or an unknown term surface as one of
:data:`ESTIMATION_ERRORS`, so that a caller can tell "these data cannot answer that" from a bug.
Importing this module loads lifelines and patsy, whose exceptions are among them.

Examples
--------
>>> issubclass(ZeroDivisionError, ESTIMATION_ERRORS)
True
"""

from __future__ import annotations

import numpy as np
from lifelines.exceptions import ConvergenceError
from patsy import PatsyError

ESTIMATION_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    ArithmeticError,
    np.linalg.LinAlgError,
    KeyError,
    IndexError,
    ConvergenceError,
    PatsyError,
)
