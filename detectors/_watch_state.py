"""The watch's snapshot: plain, versioned JSON, no pickles.

One JSON object (msgspec: floats round trip exactly, ints of any size stay exact):

- ``kind`` (``spendbrake.watch``) and ``version``: a reader refuses others. 1 when no
  series dozes, ``VERSION`` (2) when one does (a negative asleep-from hour, below): the
  layout is the same, but a release from before dozing (until 2026-12-07) would take that
  hour for a sleeping series' and teach it a run from a negative hour, so it must refuse
  the file (one line: the version) instead; a snapshot with no dozing series it reads;
- ``config``: the detectors, budgets and dimensions the state was built under, so a
  restore under a changed config maps it the way a live reload does;
- ``clock``, ``keys``, ``budgets``: each part's own plain dump (``EventClock``,
  ``KeyDirectory``, ``BudgetBook``);
- ``dims``: the dimension sets, and ``detectors``: each distinct (kind, hyperparameters,
  state version), which the rows below name by position;
- ``series``: one row a series, in the watch's order: dims, values, last spend hour,
  the hour learned last ``[hour, cost_nusd, calls]``, asleep-from hour (0: awake; minus the
  first silent hour not learned yet: dozing, ``SeriesBook.doze``), its open parts
  (flat rows of hour, partition, epoch, cost_nusd, calls), ``[config index, detector,
  state]`` of each detector (``Detector.dump_state``) and its calls at the last early looks
  (``_recent``: one int, ``hi << 64 | lo``; rows written before it have none). Live, a
  series holds these numbers in one int64 array (``Series.state``); this layout predates
  it and is unchanged;
- ``dirty``, ``folded``, ``cap_noticed``, ``notices``: the series book's bookkeeping;
- ``incidents``: each open incident once (id, seq, severity, last anomaly, scopes, origin,
  family, opened, stated-at scope, and null or, with a pause held, the largest confirmation
  age it was stated again at: rows written before ``confirm_s`` (2026-12-06) have none), and
  the (family, scope) entries naming it.

A change of layout gets a new ``VERSION`` and a reader of the old one here, as plain data.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import msgspec

from spendbrake.detectors._bank import Bank, Loose, bank_for
from spendbrake.detectors._base import Detector, make_detector
from spendbrake.detectors._book import SeriesBook
from spendbrake.detectors._budgets import BudgetBook
from spendbrake.detectors._clock import EventClock
from spendbrake.detectors._incidents import Incident, IncidentBook, Scope
from spendbrake.detectors._keys import KeyDirectory
from spendbrake.detectors._scoring import Scoring
from spendbrake.detectors._series import Series, SeriesKey
from spendbrake.schemas import BudgetConfig, DetectorConfig, gc_paused

if TYPE_CHECKING:
    from spendbrake.detectors._watch import SpendWatch

__all__ = ["KIND", "VERSION", "dump_watch", "load_watch"]

KIND = "spendbrake.watch"
VERSION = 2
#: Every version this release reads: the same layout, 2 with dozing series.
_READS = (1, 2)
_encoder = msgspec.json.Encoder()


def dump_watch(w: SpendWatch) -> bytes:
    """``w``'s learned state as the bytes of one JSON object."""
    with gc_paused():
        return _encoder.encode(_dump(w))


def _dump(w: SpendWatch) -> dict[str, Any]:
    book = w.book
    dims: dict[tuple[str, ...], int] = {}
    detectors = _DetectorTable()

    def dim(d: tuple[str, ...]) -> int:
        return dims.setdefault(d, len(dims))

    series = [
        [
            dim(sk[0]),
            list(sk[1]),
            s.last_spend_hour,
            list(s.closed),
            s.asleep_from,
            list(s.parts),
            [
                [i, detectors.ref(d), d.dump_state()]
                for i, d in zip(s.slots, s.bank.at(s.row), strict=True)
            ],
            s.recent,
        ]
        for sk, s in book.series.items()
    ]
    dozing = any(row[4] < 0 for row in series)
    state = {
        "kind": KIND,
        "version": VERSION if dozing else 1,
        "config": {
            "detectors": [c.model_dump(mode="json") for c in w.config.detectors],
            "budgets": [b.model_dump(mode="json") for b in w.config.budgets],
            "dimensions": w.config.dimensions,
        },
        "clock": w.clock.dump(),
        "series": series,
        "dirty": [[dim(sk[0]), list(sk[1]), h] for sk, h in sorted(book.dirty, key=_dirty_order)],
        "folded": [
            [hour, dim(d), list(v), p, e, cost, calls]
            for hour, shares in book.folded.items()
            for (d, v, p, e), (cost, calls) in shares.items()
        ],
        "cap_noticed": sorted([dim(d), day] for d, day in book.cap_noticed),
        "notices": [[dim(d), day, hour, cap] for d, day, hour, cap in book.notices],
        "keys": w.directory.dump(),
        "budgets": w.budgets.dump(),
        "incidents": _dump_incidents(w.incidents),
        "dims": list(dims),
        "detectors": detectors.rows,
    }
    return state


def load_watch(w: SpendWatch, data: bytes) -> dict[str, Any]:
    """Replace ``w``'s learned state with a ``dump_watch``; returns the config parts it was
    built under. Raises ``ValueError`` (one line) for anything else; ``w`` is then as it was."""
    try:
        with gc_paused():
            state = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        if data[:1] == b"\x80":
            raise ValueError(
                "a pickled snapshot of an earlier release: restore_legacy reads it"
            ) from None
        raise ValueError(f"not JSON: {exc}") from None
    if type(state) is not dict or state.get("kind") != KIND:
        raise ValueError(f"not a watch snapshot (kind {_kind(state)!r})")
    if state.get("version") not in _READS:
        raise ValueError(
            f"watch snapshot version {state.get('version')!r}; this release reads 1 and 2"
        )
    try:
        with gc_paused():
            return _load(w, state)
    except ValueError as exc:
        raise ValueError(f"watch snapshot: {exc}") from None
    except (KeyError, IndexError, TypeError, AttributeError, msgspec.ValidationError) as exc:
        raise ValueError(f"watch snapshot: {type(exc).__name__}: {exc}") from None


def _load(w: SpendWatch, state: dict[str, Any]) -> dict[str, Any]:
    saved = state["config"]
    built = {
        "detectors": [DetectorConfig.model_validate(c) for c in saved["detectors"]],
        "budgets": [BudgetConfig.model_validate(b) for b in saved["budgets"]],
        "dimensions": [[str(n) for n in d] for d in saved["dimensions"]],
    }
    dims = [tuple(sys.intern(str(n)) for n in d) for d in state["dims"]]
    templates = [_template(row) for row in state["detectors"]]

    def key(d: int, values: list[Any]) -> SeriesKey:
        return dims[d], tuple(v if v is None else sys.intern(v) for v in values)

    book = SeriesBook()
    banks: dict[tuple[Any, ...], Bank | Loose] = {}
    for d, values, last_spend, closed, asleep, parts, dets, *recent in state["series"]:
        hour, cost, calls = closed
        s = Series.restored(
            key(d, values),
            *_loaded(dets, templates, banks),
            closed=(int(hour), int(cost), int(calls)),
            last_spend_hour=int(last_spend),
            asleep_from=int(asleep),
            recent=int(recent[0]) if recent else 0,  # none before the recent look
            parts=_parts(parts),
        )
        book.series[s.key] = s
    book.dirty = {(key(d, v), int(h)) for d, v, h in state["dirty"]}
    for hour, d, v, p, e, cost, calls in state["folded"]:
        shares = book.folded.setdefault(int(hour), {})
        shares[(dims[d], tuple(v), int(p), int(e))] = (int(cost), int(calls))
    book.cap_noticed = {(dims[d], int(day)) for d, day in state["cap_noticed"]}
    book.notices = [(dims[d], int(day), int(h), int(cap)) for d, day, h, cap in state["notices"]]
    book.rebuilt()
    clock = EventClock(w.clock.lateness_s, w.clock.peek_s, w.clock.partitions)
    clock.load(state["clock"])
    directory = KeyDirectory()
    directory.load(state["keys"])
    budgets = BudgetBook(built["budgets"])
    budgets.load(state["budgets"])
    incidents = _load_incidents(state["incidents"], w.incidents)
    # All read: swap in.
    w.clock, w.book, w.directory = clock, book, directory
    w.budgets, w.incidents = budgets, incidents
    w.scoring = Scoring(book, directory.known, w.scoring.cpc_min_usd)
    return built


class _DetectorTable:
    """Each distinct (kind, hyperparameters, state version) once, in order of first use."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self._by_params: dict[tuple[Any, ...], int] = {}
        #: id of a shared hyperparameter object -> its row (one lookup per detector)
        self._by_hp: dict[int, int] = {}

    def ref(self, det: Detector) -> int:
        hp = getattr(det, "_hp", None)
        if hp is not None and (found := self._by_hp.get(id(hp))) is not None:
            return found
        params = det.params
        # Types are part of the key: a detector built with 5 reads back 5, not 5.0.
        key = (det.name, det.state_version, *((k, type(v), v) for k, v in params.items()))
        found = self._by_params.get(key)
        if found is None:
            found = self._by_params[key] = len(self.rows)
            self.rows.append([det.name, params, det.state_version])
        if hp is not None:
            self._by_hp[id(hp)] = found
        return found


def _template(row: list[Any]) -> tuple[Detector, int]:
    kind, params, version = row
    return make_detector(str(kind), **params), int(version)


def _loaded(
    dets: list[list[Any]],
    templates: list[tuple[Detector, int]],
    banks: dict[tuple[Any, ...], Bank | Loose],
) -> tuple[Bank | Loose, Any]:
    """The bank and row of a series' detectors (``[index, template, state]`` each), their
    states loaded straight into a new row of the bank (no detector object a series)."""
    slots = tuple(int(i) for i, _, _ in dets)
    refs = tuple(int(ref) for _, ref, _ in dets)
    bank = banks.get((slots, refs))
    if bank is None:
        bank = banks[(slots, refs)] = bank_for(slots, [templates[r][0] for r in refs])
    if type(bank) is not Bank:
        return bank, bank.adopt([_detector(templates[r], st) for _, r, st in dets])
    row = bank.new()
    try:
        for det, (_, ref, st) in zip(bank.at(row), dets, strict=True):
            det.load_state(st, templates[ref][1])
    except BaseException:
        bank.release(row)
        raise
    return bank, row


def _detector(template: tuple[Detector, int], state: list[Any]) -> Detector:
    det, version = template
    twin = det.__copy__()  # shares the hyperparameters; load_state replaces all the rest
    twin.load_state(state, version)
    return twin


def _parts(values: list[int]) -> list[int]:
    if any(type(v) is not int for v in values):
        raise ValueError("series parts: ints expected")
    return values


def _dirty_order(entry: tuple[SeriesKey, int]) -> tuple[Any, ...]:
    (dims, values), hour = entry
    return dims, tuple("" if v is None else v for v in values), hour


def _scope(pairs: list[list[Any]]) -> Scope:
    return tuple((str(name), value) for name, value in pairs)


def _dump_incidents(book: IncidentBook) -> dict[str, Any]:
    index: dict[int, int] = {}
    rows = []
    for incident in book.open.values():
        if id(incident) in index:
            continue
        index[id(incident)] = len(rows)
        rows.append(
            [
                incident.id,
                incident.seq,
                incident.severity,
                incident.last_ts,
                sorted(incident.scopes, key=repr),
                incident.origin,
                incident.family,
                incident.opened,
                incident.at,
                getattr(incident, "confirm", None),  # unpickled from before it was kept
            ]
        )
    opened = [[fam, scope, index[id(inc)]] for (fam, scope), inc in book.open.items()]
    return {"incidents": rows, "open": opened}


def _load_incidents(data: dict[str, Any], like: IncidentBook) -> IncidentBook:
    """The snapshot's incidents in a book with ``like``'s settings (the config's)."""
    book = IncidentBook(like.quiet_s, like.confirm_after)
    incidents = []
    for row in data["incidents"]:
        id_, seq, severity, last_ts, scopes, origin, family, opened, at, *confirm = row
        incidents.append(
            Incident(
                id=str(id_),
                seq=int(seq),
                severity=str(severity),
                last_ts=float(last_ts),
                scopes={_scope(s) for s in scopes},
                origin=None if origin is None else _scope(origin),
                family=family,
                opened=None if opened is None else float(opened),
                at=None if at is None else _scope(at),
                confirm=None if not confirm or confirm[0] is None else float(confirm[0]),
            )
        )
    for family, scope, i in data["open"]:
        book.open[(str(family), _scope(scope))] = incidents[i]
    return book


def _kind(state: Any) -> Any:
    return state.get("kind") if type(state) is dict else type(state).__name__
