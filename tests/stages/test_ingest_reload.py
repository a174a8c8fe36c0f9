"""Config reloads of a running ingest stage: the minutes of new budgets follow from the next
flush on the sets it rolls up; new sets wait for a restart, for every partition alike."""

from __future__ import annotations

from pathlib import Path

import orjson

from spendbrake.schemas import BudgetConfig, Config
from tests.stages.ingest_fakes import ingest_stage, records, tp, until

RESTART = "dimensions: the ingest rolls up by the new sets after a restart"


def _budgets(*scopes: dict[str, str]) -> Config:
    return Config(
        budgets=[BudgetConfig(name=f"b{i}", scope=s, amount_usd=100) for i, s in enumerate(scopes)]
    )


async def test_reloads_after_one_that_waits_for_a_restart_still_apply(tmp_path: Path) -> None:
    """A budget on a set not rolled up yet waits for a restart. A later reload that budgets a
    set rolled up already was refused ("dim_windows_s needs one entry per dimension set"),
    and so was every one after it; and a partition adopted after the first reload rolled up
    the new set while the others did not, so its budget counted a share of the spend."""
    stage, producer, _ = ingest_stage(tmp_path)
    await stage.adopt([tp(0)])
    await until(lambda: 0 in stage.processors)
    built = stage.processors[0].rollups.dimensions

    assert stage.reconfigure(_budgets({"customer": "acme", "team": "search"})) == [RESTART]
    both = _budgets({"customer": "acme", "team": "search"}, {"team": "search"})
    assert stage.reconfigure(both) == [RESTART]  # still waiting, and said again

    await stage.adopt([tp(1)])
    await until(lambda: 1 in stage.processors)
    assert stage.processors[1].rollups.dimensions == built
    for partition in (0, 1):
        stage.processors[partition].process_batch(records(partition, 120))
    await stage.checkpoint()
    minutes = {
        (rollup["partition"], tuple(rollup["series"].items()))
        for _, _, value in producer.sent
        if (rollup := orjson.loads(value)).get("window_s") == 60
    }
    # The team budget's minutes, from the next flush, in both partitions; none of the set
    # that waits for a restart.
    assert minutes == {(0, (("team", "search"),)), (1, (("team", "search"),))}, minutes
    await stage.revoke([tp(0), tp(1)])
