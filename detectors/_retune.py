"""Change a live detector's hyperparameters without throwing away what it learned.

A config reload that raises ``min_usd`` or lowers ``fast_z`` should not send every
series back to a two-week cold start. ``retune`` builds the detector twice from scratch,
once with the old and once with the new parameters, and compares the two fresh states
attribute by attribute (recursing into sub-objects such as the residual scale):

- a part equal in both fresh builds is not shaped by the change: the live (learned) value
  is kept;
- a part that differs but that learning never touched (a threshold copied into a
  sub-object, a window length in periods) takes the new value;
- a part that differs AND holds learned data (a ring sized by the window, a model built
  on the season length) cannot be carried over: ``retune`` returns None and the caller
  starts that detector afresh.

A few parameters define what the learned numbers mean rather than their shape (the
window length, the unit of the log transform, a model's order): a change to one of
``RESHAPING`` (or a detector's own ``restart_on``) always restarts the detector.
This needs no other per-detector code, so a new detector is retunable by construction.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from spendbrake.detectors._base import Detector, make_detector

__all__ = ["retune"]


#: Parameters whose change makes learned state meaningless even where its shape fits.
RESHAPING = frozenset({"period_s", "window_s", "season", "unit", "days", "p", "peak_days"})


class _Conflict(Exception):
    """A learned part whose shape depends on a changed parameter."""


def retune(detector: Detector, **params: Any) -> Detector | None:
    """``detector`` with ``params`` changed and its learned state kept, or None.

    Raises ``ValueError`` (as ``make_detector`` does) for an unknown or invalid parameter.
    """
    old = detector.params
    new = {**old, **params}
    fresh_new = make_detector(detector.name, **new)
    if new == old:
        return copy.deepcopy(detector)
    restart_on = getattr(type(detector), "restart_on", RESHAPING)
    if any(old.get(k) != v for k, v in params.items() if k in restart_on):
        return None
    fresh_old = make_detector(detector.name, **old)
    try:
        merged = _merge(detector, fresh_old, fresh_new)
    except _Conflict:
        return None
    return merged


def _same(a: Any, b: Any) -> bool:
    # pickle, not ==: float arrays full of NaN are equal here and unequal under ==.
    try:
        return pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL) == pickle.dumps(
            b, protocol=pickle.HIGHEST_PROTOCOL
        )
    except (pickle.PicklingError, TypeError, AttributeError):
        return a is b


def _merge(live: Any, fresh_old: Any, fresh_new: Any) -> Any:
    if _same(fresh_old, fresh_new):
        return copy.deepcopy(live)
    if _same(live, fresh_old):
        return copy.deepcopy(fresh_new)
    names = _attributes(fresh_old)
    if names is None or type(live) is not type(fresh_new) or names != _attributes(fresh_new):
        raise _Conflict
    out = copy.copy(fresh_new)
    for name in names:
        value = _merge(getattr(live, name), getattr(fresh_old, name), getattr(fresh_new, name))
        object.__setattr__(out, name, value)
    return out


def _attributes(obj: Any) -> tuple[str, ...] | None:
    """Names of an object's attributes, or None for values (numbers, arrays...).

    Those it pickles by, when it names them (``__getstate__`` giving a dict: a detector in
    rows (``detectors._rows``) names its numbers and blocks, not where its row is; a
    ``BurnScale`` its scale, count and slow window); else its slots and instance dict.
    """
    if isinstance(obj, (int, float, str, bytes, bytearray, list, tuple, dict, set)):
        return None
    state = obj.__getstate__()
    if isinstance(state, dict):
        return tuple(sorted(state)) or None
    names: list[str] = []
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                names.append(name)
    if hasattr(obj, "__dict__"):
        names.extend(vars(obj))
    if not names:
        return None
    return tuple(sorted(set(names)))
