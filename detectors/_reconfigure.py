"""Carry the series' detectors over to a new config, keeping what they learned.

A reload (or a restore under a config changed since the snapshot) matches each new
detector entry to the old one of the same kind, metric and scope and retunes it in place
(``detectors.retune``); what cannot be carried starts afresh, and says so.
"""

from __future__ import annotations

from typing import Any

from spendbrake.detectors._base import Detector, make_detector
from spendbrake.detectors._retune import retune
from spendbrake.detectors._series import Series, SeriesKey
from spendbrake.schemas import Config, DetectorConfig

__all__ = ["built_from", "outdated", "remap_detectors"]


def built_from(config: Config) -> dict[str, Any]:
    """The config parts a watch's learned state depends on."""
    return {
        "detectors": config.detectors,
        "budgets": config.budgets,
        "dimensions": config.dimensions,
    }


def outdated(series: dict[SeriesKey, Series], config: Config) -> bool:
    """Detectors built with other parameters than ``config`` resolves to now: a default
    changed in an upgrade. Restoring retunes them, keeping what they learned."""
    want = [make_detector(c.kind, **c.params).params for c in config.detectors]
    checked: set[int] = set()
    for s in series.values():
        for i, det in s.detectors:
            if i not in checked:  # a config entry builds all its detectors alike
                checked.add(i)
                if det.params != want[i]:
                    return True
        if len(checked) == len(want):
            break
    return False


def remap_detectors(
    series: dict[SeriesKey, Series], old: list[DetectorConfig], config: Config
) -> tuple[dict[SeriesKey, list[tuple[int, Detector]]], list[str]]:
    """The detectors each series of ``config``'s dimension sets has under ``config``
    (series of other sets are not in the result), and one note per detector restarted,
    added or removed. Nothing is changed in place."""
    detect_dims = {tuple(d) for d in config.dimensions}
    # New detector index -> the old one it continues (None: a new detector).
    continues: list[int | None] = []
    for new in config.detectors:
        same = (new.kind, new.metric, new.scope)
        match = next(
            (
                i
                for i, o in enumerate(old)
                if i not in continues and (o.kind, o.metric, o.scope) == same
            ),
            None,
        )
        continues.append(match)
    params = [make_detector(c.kind, **c.params).params for c in config.detectors]
    restarted: set[int] = set()
    out: dict[SeriesKey, list[tuple[int, Detector]]] = {}
    for sk, s in series.items():
        if sk[0] not in detect_dims:
            continue
        learned = dict(s.detectors)
        attrs = dict(s.scope)
        rebuilt: list[tuple[int, Detector]] = []
        for j, cfg in enumerate(config.detectors):
            if not cfg.runs_on(sk[0]) or not all(attrs.get(k) == v for k, v in cfg.scope.items()):
                continue
            i = continues[j]
            before = learned.get(i) if i is not None else None
            after = retune(before, **params[j]) if before is not None else None
            if after is None:
                after = make_detector(cfg.kind, **cfg.params)
                if before is not None:
                    restarted.add(j)
            rebuilt.append((j, after))
        out[sk] = rebuilt
    notes = [
        f"detectors[{j}] ({_named(config.detectors[j])}): a parameter that shapes what it "
        "learned changed; its baselines start afresh"
        for j in sorted(restarted)
    ]
    notes += [
        f"detectors[{j}] ({_named(config.detectors[j])}): new; learns from now on"
        for j, i in enumerate(continues)
        if i is None
    ]
    notes += [f"detector {_named(o)} removed" for i, o in enumerate(old) if i not in continues]
    return out, notes


def _named(cfg: DetectorConfig) -> str:
    """How an operator tells a config's detectors apart: ``baseline on cost_per_call``."""
    scope = "".join(f", {k}={v}" for k, v in sorted(cfg.scope.items()))
    return f"{cfg.kind} on {cfg.metric}{scope}"
