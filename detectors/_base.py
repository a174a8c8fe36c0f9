"""The detector protocol: a frozen ``Verdict``, a ``Detector`` base in river's shape, a registry.

Detectors are pure: ``update(ts, value)`` scores the value first, then learns from it
(prequential, as river's anomaly checks do). Hyperparameters live under their argument
names, so ``params`` can be read back from the signature; learned state is small plain
data, so a pickle of the detector is its snapshot.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Detector", "Verdict", "available", "make_detector", "register"]

WEEK_S = 7 * 86400.0
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one ``update`` concluded about one closed window.

    ``score`` is in [0, 1] and crosses 0.5 where the statistical threshold is met;
    ``is_anomaly`` may additionally need a dollar-impact floor or hysteresis.
    """

    score: float
    is_anomaly: bool
    expected: float | None
    observed: float
    reason: str


class Detector:
    """Base for online detectors: one verb, ``update``, that scores then learns."""

    name: str = ""

    def update(self, ts: float, value: float) -> Verdict:  # pragma: no cover - abstract
        """Score ``value`` for the window at ``ts`` (epoch seconds), then learn from it."""
        raise NotImplementedError

    def peek(self, ts: float, value: float) -> Verdict:
        """Score a window still filling (``value`` so far) without learning from it.

        Spend only grows within a window, so an open window that already scores as an
        anomaly will close as one: the live stage can alert minutes into the hour.
        This fallback scores a copy; detectors override it when that is too slow.
        """
        return copy.deepcopy(self).update(ts, value)

    @property
    def params(self) -> dict[str, Any]:
        """Hyperparameters read back from the signature (river's ``_get_params`` idea)."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def clone(self) -> Detector:
        """A fresh detector with the same hyperparameters and no learned state."""
        return type(self)(**self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


_REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type[Detector])


def register(name: str) -> Callable[[D], D]:
    """Class decorator enrolling a detector under ``name`` (and so in the conformance suite)."""

    def deco(cls: D) -> D:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered detector names, sorted."""
    return sorted(_REGISTRY)


def make_detector(name: str = "baseline", **params: Any) -> Detector:
    """Build a registered detector; unknown names or parameters raise ``ValueError``.

    >>> make_detector("nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown detector 'nope'; choose one of baseline, cloud_sigma, ..., wow_naive
    >>> make_detector("wow", rise=0.4).params["rise"]
    0.4
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(available())}")
    sig = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    for key, value in params.items():
        if key not in sig:
            raise ValueError(
                f"unknown parameter {key!r} for detector {name!r}; choose from {', '.join(sig)}"
            )
        # Config arrives from YAML: a string where a number belongs must fail here, by name,
        # not as a TypeError deep in a comparison.
        default = sig[key].default
        if isinstance(default, int | float) and not isinstance(default, bool):
            want = int if isinstance(default, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, want):
                kind = "an int" if want is int else "a number"
                raise ValueError(f"{key}: must be {kind}, got {value!r}")
    return cls(**params)


# Small shared helpers: validation, formatting, input hygiene.


def check(name: str, value: float, ok: bool, need: str) -> None:
    """Raise a one-line ``ValueError`` naming the parameter when ``ok`` is false."""
    if not ok:
        raise ValueError(f"{name}: must be {need}, got {value!r}")


def usable(ts: float, value: float) -> bool:
    """NaN, inf and negative spend are treated as a missing window, never as data."""
    try:
        return math.isfinite(ts) and math.isfinite(value) and value >= 0.0
    except TypeError:
        return False


def as_float(value: object) -> float:
    """``value`` as a float for ``Verdict.observed``; NaN when it is not a number at all."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def ignored(value: object) -> Verdict:
    """The verdict for an unusable input: never an alert, never a raise."""
    return Verdict(0.0, False, None, as_float(value), "missing or invalid value ignored")


def usd(x: float) -> str:
    """Dollars at a precision that fits the magnitude ($412, $3.80, $0.0031)."""
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    return f"${x:.2g}"


def per(period_s: float) -> str:
    """Rate suffix for a window length: '/h', '/d', or '/300s'."""
    return {60.0: "/min", 3600.0: "/h", 86400.0: "/d"}.get(float(period_s), f"/{period_s:g}s")


def slot_label(k: int, period_s: float, season: int) -> str:
    """'Tue 14:00' when the season is one week (labels are UTC), else 'slot 12'."""
    if abs(period_s * season - WEEK_S) > 1e-6:
        return f"slot {k % season}"
    start = k * period_s
    day = _DAYS[int((start // 86400 + 3) % 7)]  # 1970-01-01 was a Thursday
    sod = int(start % 86400)
    return f"{day} {sod // 3600:02d}:{sod % 3600 // 60:02d}"


def ratio_score(ratio: float) -> float:
    """Map a threshold ratio (1.0 = at threshold) to [0, 1): 0.5 at threshold, saturating."""
    if not ratio > 0.0:
        return 0.0
    if math.isinf(ratio):
        return 1.0
    return ratio / (1.0 + ratio)
