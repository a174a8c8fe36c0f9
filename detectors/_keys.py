"""The key directory: each api key's team, feature... as its first spend said, for scoping.

Alerts name the keys inside their scope (the things an action can pause), and an anomaly
seen at a key is known to lie within its team. Rollups of the key set (``KEY_DIMENSIONS``)
carry a key with its attributes; the directory keeps them from the first record of a key,
and when it last spent. Attribution, not authority: whether a key may be paused is the
config's ``keys`` section's to say (``actions.apply_policies``).
"""

from __future__ import annotations

from typing import Any

from spendbrake.schemas import KeyInfo

__all__ = ["KeyDirectory"]

_FIELDS = ("api_key", "team", "feature", "environment", "workload")


class KeyDirectory:
    """Known keys by ``api_key``, with the start of the last hour each spent in."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyInfo] = {}
        #: api key -> start of the latest hour a rollup of it was seen for
        self.last_hour: dict[str, int] = {}
        #: Bumped when a key is new or spends in a later hour: what ``keys_in`` answers may
        #: have changed (derived, not state).
        self.changes = 0

    def record(self, dims: tuple[str, ...], values: tuple[str | None, ...], hour: int) -> None:
        """Take in an hour record of the key set (``dims`` in any order)."""
        attrs = dict(zip(dims, values, strict=True))
        key = attrs.get("api_key")
        if key is None:
            return
        if key not in self.keys:
            self.keys[key] = KeyInfo(
                api_key=key,
                team=attrs.get("team"),
                feature=attrs.get("feature"),
                environment=attrs.get("environment"),
                workload=attrs.get("workload"),
            )
        if hour > self.last_hour.get(key, -1):
            self.last_hour[key] = hour
            self.changes += 1

    def keys_in(self, scope: dict[str, str | None], since: float) -> list[KeyInfo]:
        """Known keys inside ``scope`` that spent since ``since`` (sorted by key)."""
        out = []
        for key in sorted(self.keys):
            info = self.keys[key]
            attrs = info.attrs()
            if self.last_hour.get(key, 0) < since:
                continue
            # Fields the directory does not hold (model, customer) cannot be resolved to keys.
            if all(name in attrs and attrs[name] == value for name, value in scope.items()):
                out.append(info)
        return out

    def known(self, scope: tuple[tuple[str, str | None], ...]) -> dict[str, str | None]:
        """A series' attributes, with a key's team, feature... from the directory."""
        known: dict[str, str | None] = dict(scope)
        key = known.get("api_key")
        if key is not None and key in self.keys:
            known = {**self.keys[key].attrs(), **known}
        return known

    def prune(self, horizon: int) -> None:
        """Forget keys with no spend since ``horizon``."""
        for key in [k for k, h in self.last_hour.items() if h < horizon]:
            del self.last_hour[key]
            del self.keys[key]

    # -- state ---------------------------------------------------------------

    def dump(self) -> list[list[Any]]:
        """One row a key: its five fields, then the last hour it spent in."""
        return [
            [*(getattr(info, f) for f in _FIELDS), self.last_hour.get(key, 0)]
            for key, info in self.keys.items()
        ]

    def load(self, rows: list[list[Any]]) -> None:
        self.keys, self.last_hour = {}, {}
        self.changes += 1
        for row in rows:
            *fields, hour = row
            info = KeyInfo(*fields)
            self.keys[info.api_key] = info
            self.last_hour[info.api_key] = int(hour)
