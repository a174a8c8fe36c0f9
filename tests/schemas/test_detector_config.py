"""The detectors section: the default set, where each detector runs, the example file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from spendbrake._config_loader import load_config
from spendbrake.schemas import Config, DetectorConfig


def test_cost_per_call_runs_on_keys_only_by_default() -> None:
    by_metric = {c.metric: c for c in Config().detectors}
    shift = by_metric["cost_per_call"]
    assert shift.kind == "shift" and shift.runs_on(("api_key",))
    assert not shift.runs_on(("team",)) and not shift.runs_on(())
    assert by_metric["cost_usd"].runs_on(("team", "feature"))  # None: every dimension set


def test_dimensions_name_event_fields() -> None:
    with pytest.raises(ValidationError, match="unknown event field 'tenant'"):
        DetectorConfig(kind="shift", dimensions=[["tenant"]])


def test_the_example_spells_out_the_default_detectors() -> None:
    example = Path(__file__).parents[2] / "examples" / "spendbrake.yaml"
    assert load_config(example, env={}).detectors == Config().detectors
