"""Online detectors over rolled-up spend series: pure math, no I/O, plain state.

``make_detector(name, **params)`` builds one; ``update(ts, value)`` returns a ``Verdict``.
``BudgetTracker`` follows calendar budgets (thresholds, hard stop, projection, burn rate);
``SpendWatch`` runs all of it on rollup records and groups anomalies into incidents.
Importing this package registers every detector module below.

>>> from detectors import available
>>> available()
['baseline', 'cloud_sigma', 'generic', 'river_snarimax', 'shift', 'wow', 'wow_naive']
"""

from __future__ import annotations

from spendbrake.detectors import (  # noqa: F401  (registers)
    _cloud,
    _generic,
    _river,
    _seasonal,
    _shift,
    _wow,
    _wow_naive,
)
from spendbrake.detectors._base import Detector, Verdict, available, make_detector, register
from spendbrake.detectors._budget import BudgetTracker, BudgetVerdict
from spendbrake.detectors._watch import SpendWatch

__all__ = [
    "BudgetTracker",
    "BudgetVerdict",
    "Detector",
    "SpendWatch",
    "Verdict",
    "available",
    "make_detector",
    "register",
]
