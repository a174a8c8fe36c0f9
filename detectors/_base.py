"""The detector protocol: a frozen ``Verdict``, a ``Detector`` base in river's shape, a registry.

Detectors are pure: ``update(ts, value)`` scores the value first, then learns from it
(prequential, as river's anomaly checks do). Hyperparameters live under their argument
names, so ``params`` can be read back from the signature; learned state is small plain
data, written by ``dump_state`` and read back by ``load_state`` into a detector built from
the same ``params``: that pair is a detector's snapshot.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from spendbrake.detectors._plain import from_plain, to_plain
from spendbrake.schemas import did_you_mean

__all__ = ["Detector", "Verdict", "available", "make_detector", "register"]

WEEK_S = 7 * 86400.0
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one ``update`` concluded about one closed window.

    ``score`` is in [0, 1] and crosses 0.5 where the statistical threshold is met;
    ``is_anomaly`` may additionally need a dollar-impact floor or hysteresis. ``trend``
    marks an anomaly that is real but not urgent (a week-over-week rise, a creep): the
    detector stage sends it as severity ``info``, for the digest, not as a page.
    """

    score: float
    is_anomaly: bool
    expected: float | None
    observed: float
    reason: str
    trend: bool = False


class Detector:
    """Base for online detectors: one verb, ``update``, that scores then learns.

    No instance dict of its own (``__slots__ = ()``), so a subclass with ``__slots__`` has
    none either: at 100k series a dict per detector is most of its memory.
    """

    __slots__ = ()
    name: str = ""
    #: Whether a silent window (0) can alert however long the silence has lasted (a
    #: two-sided detector: a drop is news). The watch lets a silent series sleep only when
    #: none of its detectors says so (the conformance suite checks the others never do).
    alerts_on_silence: bool = False
    #: Whether ``peek`` takes ``elapsed``, the share of the window seen so far, and judges a
    #: rate on it (``baseline``'s count path: calls so far against the part of the hour's
    #: usual calls), and ``recent``, the (calls, share) of the last minutes, judged alike.
    #: Others judge an open window's sum against the whole window's.
    peeks_partial: bool = False
    #: The learned attributes, in the order ``dump_state`` writes them. Hyperparameters are
    #: not state: they come back through ``params`` (the conformance suite checks that
    #: every attribute is one or the other).
    state_fields: ClassVar[tuple[str, ...]] = ()
    #: Changes when ``state_fields`` or what one holds changes: a snapshot names the version
    #: its states were written in, and ``load_state`` says which it reads.
    state_version: ClassVar[int] = 1

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:  # pragma: no cover
        """Score ``value`` for the window at ``ts`` (epoch seconds), then learn from it.

        ``weight`` is the evidence behind ``value`` when windows differ in it, as river's
        ``learn_one(..., w)`` takes a sample weight: the calls behind an hour's cost per
        call (the mean of 2 calls is far noisier than the mean of 40). Detectors that
        cannot use it ignore it; 1.0 everywhere is the unweighted detector.
        """
        raise NotImplementedError

    def learn(self, ts: float, value: float, weight: float = 1.0) -> None:
        """``update`` when nobody reads the verdict: a sleeping series' silent hours, taught
        when it wakes (hundreds at once after days of silence). The same state as
        ``update`` (the conformance suite checks it); a detector overrides it where the
        verdict costs more than the learning."""
        self.update(ts, value, weight)

    def learn_run(self, start: int, until: int, value: float, weight: float = 1.0) -> None:
        """``learn`` of the same ``value`` for every hour from ``start`` to ``until`` (epoch
        seconds, whole hours): a sleeping series' silent hours, taught when it wakes. A
        detector overrides it where a run can be learned faster than hour by hour, to the
        same state (the conformance suite checks it)."""
        for ts in range(start, until, 3600):
            self.learn(float(ts), value, weight)

    def quiet_until(self, ts: int, value: float) -> float:
        """The first hour from ``ts`` on (epoch seconds) whose silent window (``value``: what
        a silent hour is fed) may alert, if every hour from ``ts`` on is silent; ``math.inf``
        if none may. Until then the watch need not feed it hour by hour: it learns those
        hours later, as a run (``learn_run``), to the same state (the conformance suite
        checks that none of them alerts). This default cannot tell: ``ts`` itself."""
        return float(ts)

    def peek(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Score a window still filling (``value`` so far) without learning from it.

        Spend only grows within a window, so an open window that already scores as an
        anomaly will close as one: the live stage can alert minutes into the hour.
        This fallback scores a copy; detectors override it when that is too slow.
        """
        return copy.deepcopy(self).update(ts, value, weight)

    def may_alert(self, ts: float, value: float, weight: float = 1.0) -> bool:
        """False only where ``peek(ts, value, weight)`` cannot be an anomaly.

        The early look asks it before peeking: a detector whose verdict (its reason text)
        costs more than its test answers it without the verdict, so only the windows that
        may alert pay for one. This default says nothing: peek.
        """
        return True

    @property
    def params(self) -> dict[str, Any]:
        """Hyperparameters read back from the signature (river's ``_get_params`` idea)."""
        return {p: getattr(self, p) for p in _init_params(type(self))}

    def __copy__(self) -> Detector:
        """A shallow twin, attribute by attribute, with no state dict round trip (``peek``
        makes one per call; a restore one per series): the hyperparameters are shared, and
        so are the state objects until the twin replaces them."""
        twin = object.__new__(type(self))
        for name in _slot_names(type(self)):
            if hasattr(self, name):
                object.__setattr__(twin, name, getattr(self, name))
        own = getattr(self, "__dict__", None)
        if own is not None:
            twin.__dict__.update(own)
        return twin

    def dump_state(self) -> list[Any]:
        """The learned state as plain data (``detectors._plain``), ``state_fields`` in order."""
        return [to_plain(getattr(self, name)) for name in self.state_fields]

    def load_state(self, state: list[Any], version: int = 1) -> None:
        """Take ``dump_state``'s output (or its JSON round trip) into this detector, freshly
        built with the same ``params``; raises ``ValueError`` for one that does not fit."""
        if version != self.state_version:
            raise ValueError(
                f"{self.name} state version {version}; this release reads {self.state_version}"
            )
        if type(state) is not list or len(state) != len(self.state_fields):
            raise ValueError(f"{self.name} state: {len(self.state_fields)} values expected")
        for name, value in zip(self.state_fields, state, strict=True):
            try:
                object.__setattr__(self, name, from_plain(getattr(self, name), value))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{self.name} state {name}: {exc}") from None

    def clone(self) -> Detector:
        """A fresh detector with the same hyperparameters and no learned state."""
        return type(self)(**self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class HyperParams:
    """Base for a detector's hyperparameters: a frozen ``dataclass(slots=True)`` shared by value.

    Why: every series' detector of one config has the same hyperparameters. Held as
    attributes, each of 100k detectors would keep its own copy of each (a float object is
    24 bytes, plus its slot); held here, they keep one reference to one object per config.
    ``share`` hands out that object; copies and unpickling go through it too, so a
    detector restored from a snapshot shares as well. Being immutable, sharing is safe.
    Constants derived from the hyperparameters go in ``field(init=False)`` fields set in
    ``__post_init__``: computed once per config, not on every update.
    """

    __slots__ = ()

    def __copy__(self) -> HyperParams:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> HyperParams:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shared_new, (type(self), _values(self)))


def _values(params: HyperParams) -> tuple[Any, ...]:
    """The hyperparameters themselves (the init fields), in order; not derived constants."""
    return tuple(getattr(params, f.name) for f in dataclasses.fields(params) if f.init)  # type: ignore[arg-type]


P = TypeVar("P", bound=HyperParams)
D = TypeVar("D", bound=type[Detector])
C = TypeVar("C", bound=type)
#: One object per distinct hyperparameter set; cleared when it grows past ``_SHARED_MAX``
#: (then only later builds stop sharing with earlier ones; nothing else changes).
_SHARED: dict[tuple[Any, ...], Any] = {}
_SHARED_MAX = 4096


def share(params: P) -> P:
    """The shared object equal to ``params`` (same type and same type and value per field).

    Types are part of the key, so ``5`` and ``5.0`` stay distinct and ``params`` reads back
    exactly what was passed.
    """
    key = (type(params), *((type(v), v) for v in _values(params)))
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        found = _SHARED[key] = params
    return found  # type: ignore[no-any-return]


def _shared_new(cls: type[P], values: tuple[Any, ...]) -> P:
    return share(cls(*values))


def expose(params_type: type[HyperParams]) -> Callable[[C], C]:
    """Class decorator: each field of ``params_type`` reads as ``detector.<field>``.

    The detector keeps its ``HyperParams`` in ``_hp``; this keeps the hyperparameters
    readable under their argument names (``params``, ``repr``, config code, tests).
    """

    def deco(cls: C) -> C:
        for f in dataclasses.fields(params_type):  # type: ignore[arg-type]
            if not f.init:
                continue  # a derived constant, not a hyperparameter
            getter = operator.attrgetter(f"_hp.{f.name}")
            setattr(cls, f.name, property(getter, doc=f"Hyperparameter ``{f.name}``."))
        return cls

    return deco


_REGISTRY: dict[str, type[Detector]] = {}


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
        raise ValueError(
            f"unknown detector {name!r}{did_you_mean(name, available())}; "
            f"choose one of {', '.join(available())}"
        )
    sig = _init_params(cls)
    for key, value in params.items():
        if key not in sig:
            raise ValueError(
                f"unknown parameter {key!r} for detector {name!r}{did_you_mean(key, sig)}; "
                f"choose from {', '.join(sig)}"
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


@functools.cache
def _slot_names(cls: type) -> tuple[str, ...]:
    """Every ``__slots__`` name of ``cls`` and its bases (none of them ``__dict__``)."""
    return tuple(
        name
        for klass in cls.__mro__
        for name in getattr(klass, "__slots__", ())
        if name not in ("__dict__", "__weakref__")
    )


@functools.cache
def _init_params(cls: type[Detector]) -> dict[str, inspect.Parameter]:
    """A detector class's constructor parameters (read once: the watch builds one detector
    per new series, and ``inspect.signature`` costs more than the detector)."""
    return {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}


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
    """'Tue 14:00' when the season is one week (labels are UTC), else 'slot 12'.

    Every verdict names its slot, and a week has few: each label is written once.
    """
    if period_s * season != WEEK_S:  # the label is k's slot's only for an exact week
        return _slot_label(k, period_s, season)
    key = (k % season, period_s, season)
    label = _LABELS.get(key)
    if label is None:
        if len(_LABELS) >= 4096:
            _LABELS.clear()
        label = _LABELS[key] = _slot_label(k, period_s, season)
    return label


def _slot_label(k: int, period_s: float, season: int) -> str:
    if abs(period_s * season - WEEK_S) > 1e-6:
        return f"slot {k % season}"
    start = k * period_s
    day = _DAYS[int((start // 86400 + 3) % 7)]  # 1970-01-01 was a Thursday
    sod = int(start % 86400)
    return f"{day} {sod // 3600:02d}:{sod % 3600 // 60:02d}"


#: (slot, period, season) -> its label
_LABELS: dict[tuple[int, float, int], str] = {}


def ratio_score(ratio: float) -> float:
    """Map a threshold ratio (1.0 = at threshold) to [0, 1): 0.5 at threshold, saturating."""
    if not ratio > 0.0:
        return 0.0
    if math.isinf(ratio):
        return 1.0
    return ratio / (1.0 + ratio)
