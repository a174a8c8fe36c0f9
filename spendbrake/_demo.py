"""``spendbrake demo``: the whole pipeline on a laptop, with nothing installed but us.

Starts the embedded broker, a fake Slack and a fake LiteLLM gateway on 127.0.0.1, and the
three worker stages in-process (ingest, detect, act); publishes six hours of simulated
traffic through the producer SDK, compressed into a short run: in the last hour a runaway
agent loop on the search team and a surge on the support team's critical bot. Each team
has a budget a little above its normal spend, so both runs cross their hard stop: the
search keys are paused at the gateway, the critical bot is alerted and never paused. The
live view reads spend from ``spend.rollups``, alerts from the fake Slack, pauses from the
fake gateway.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from schemas import Config, PriceTable
from streamer import (
    ActionStage,
    DetectStage,
    IngestWorker,
    RollupRecord,
    RollupTotals,
    WorkerSettings,
)

from ._broker import EmbeddedBroker, ensure_topics
from ._simulate import parse_incident, simulate
from .fakes.gateway import FakeGateway
from .fakes.slack import FakeSlack
from .sdk import SpendProducer

HISTORY_S = 6 * 3600


#: Budgets sit this far above each team's normal spend over the run.
BUDGET_HEADROOM = 1.15


@dataclass
class DemoState:
    totals: RollupTotals = field(default_factory=RollupTotals)
    published: int = 0
    slack: FakeSlack | None = None
    gateway: FakeGateway | None = None

    def on_records(self, records: list[RollupRecord]) -> None:
        self.totals.update(records)


def run_demo(duration_s: float, rate: float, seed: int, console: Console) -> int:
    return asyncio.run(_demo(duration_s, rate, seed, console))


async def _demo(duration_s: float, rate: float, seed: int, console: Console) -> int:
    work = Path(tempfile.mkdtemp(prefix="spendbrake-demo-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    console.print(
        f"embedded broker on {broker.bootstrap_servers} (memory only); work files in {work}"
    )
    slack = FakeSlack(token="xoxb-demo").start()
    gateway = FakeGateway(master_key="sk-demo-master", strict_key_format=False).start()
    try:
        end_ts = float(int(time.time()) // 60 * 60)
        start_ts = end_ts - HISTORY_S
        last_hour = f"+{HISTORY_S // 3600 - 1}h"
        incidents = [
            parse_incident(f"runaway:team=search,feature=agent,x=10,start={last_hour},duration=1h"),
            parse_incident(f"spike:api_key=support-bot-prod,x=8,start={last_hour},duration=1h"),
        ]
        config = _config(broker.bootstrap_servers, slack, gateway, start_ts, rate, seed)
        await ensure_topics(
            broker.bootstrap_servers, config.kafka.topics.names(), config.kafka.partitions
        )
        state = DemoState(slack=slack, gateway=gateway)
        settings = WorkerSettings(
            state_dir=work / "state", flush_interval_s=0.5, checkpoint_interval_s=2.0
        )
        worker = IngestWorker(config, settings, on_records=state.on_records)
        stages = [worker, DetectStage(config, settings), ActionStage(config, settings)]
        stage_tasks = [asyncio.create_task(stage.run()) for stage in stages]
        producer = SpendProducer(broker.bootstrap_servers, spill_path=work / "spill.jsonl")
        events = simulate(start_ts, HISTORY_S, rate_per_s=rate, seed=seed, incidents=incidents)
        with Live(_view(state, start_ts), console=console, refresh_per_second=4) as live:
            wall0 = time.monotonic()
            for event in events:
                # Publish event time at HISTORY_S / duration_s times real speed.
                due = (event.ts - start_ts) / HISTORY_S * duration_s
                while time.monotonic() - wall0 < due:
                    live.update(_view(state, start_ts))
                    await asyncio.sleep(0.1)
                producer.emit(event)
                state.published += 1
                if state.published % 2000 == 0:
                    live.update(_view(state, start_ts))
                    await asyncio.sleep(0)  # let the worker run when publishing falls behind
            await asyncio.to_thread(producer.flush, 30)
            # Let the worker catch up with everything published (bounded wait).
            settle = time.monotonic() + 45
            while time.monotonic() < settle and _consumed(worker) < state.published:
                live.update(_view(state, start_ts))
                await asyncio.sleep(0.25)
            # Alerts and pauses follow the last rollups within a few seconds.
            settle = time.monotonic() + 15
            while time.monotonic() < settle and not (gateway.blocked_keys and slack.messages):
                live.update(_view(state, start_ts))
                await asyncio.sleep(0.25)
            await asyncio.sleep(2.0)
            live.update(_view(state, start_ts))
        producer.close()
        console.print()
        for stage in stages:
            stage.stop()
        await asyncio.gather(*stage_tasks)
        console.print(
            f"published {state.published:,} events; the worker wrote {worker.rollups_out:,} rollup "
            f"updates and {worker.dead_out} dead letters; {len(slack.parents())} Slack alert(s) "
            f"at the fake Slack, paused at the fake gateway: "
            f"{', '.join(sorted(gateway.blocked_keys)) or 'nothing'}. The support bot is "
            "critical: alerted, never paused. Audit trail: the spend.actions topic."
        )
        return 0
    finally:
        gateway.stop()
        slack.stop()
        broker.stop()


def _config(
    bootstrap: str, slack: FakeSlack, gateway: FakeGateway, start_ts: float, rate: float, seed: int
) -> Config:
    """The demo's config: a month budget per team a little above its normal spend."""
    prices = PriceTable.default()
    normal: dict[str, float] = {}
    for event in simulate(start_ts, HISTORY_S, rate_per_s=rate, seed=seed):
        cost = event.cost_usd if event.cost_usd is not None else prices.price(event) or 0.0
        normal[event.team] = normal.get(event.team, 0.0) + cost
    budgets = [
        {
            "name": f"{team}-demo",
            "scope": {"team": team},
            "amount_usd": round(max(spend, 1.0) * BUDGET_HEADROOM, 2),
            "period": "month",
            "alert_at": [1.0],
            # The budgets are sized to six hours of spend, not a month's pace: burn-rate
            # alerts would fire for every team. The hard stop tells the story.
            "fast_burn": 1000,
            "slow_burn": 1000,
        }
        for team, spend in sorted(normal.items())
    ]
    return Config.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "budgets": budgets,
            # Six hours is too little history for the seasonal baseline: budgets act here.
            "detectors": [],
            "slack": {"token": "xoxb-demo", "base_url": slack.base_url, "retry_cap_s": 2},
            "gateway": {"url": gateway.url, "master_key": "sk-demo-master", "retry_cap_s": 2},
        }
    )


def _consumed(worker: IngestWorker) -> int:
    return sum(p.stats.records for p in worker.processors.values())


def _view(state: DemoState, start_ts: float) -> Group:
    return Group(_spend(state, start_ts), _effects(state))


def _effects(state: DemoState) -> Table:
    table = Table(title="alerts at the (fake) Slack, pauses at the (fake) gateway")
    table.add_column("alert")
    table.add_column("done")
    if state.slack is not None:
        for message in state.slack.parents()[-8:]:
            done = next(
                (
                    b["text"]["text"]
                    for b in message.get("blocks") or []
                    if b.get("type") == "section" and b["text"]["text"].startswith("*Done:*")
                ),
                "",
            )
            table.add_row(str(message.get("text"))[:70], done.removeprefix("*Done:* ")[:70])
    if state.gateway is not None and state.gateway.blocked_keys:
        table.caption = "paused: " + ", ".join(sorted(state.gateway.blocked_keys))
    return table


def _spend(state: DemoState, start_ts: float) -> Table:
    minutes = state.totals.totals(("team",), 60)
    # "Now" is as far as the worker's rollups reach, not what was published.
    now = max((start + 60 for _, start in minutes), default=start_ts)
    table = Table(
        title=f"spend per team, live from spend.rollups ({state.published:,} events published)",
        caption="event time compressed: six hours of traffic in the run",
    )
    for name in ("team", "total $", "calls", "last 60 min $", "60 min before $", "change"):
        table.add_column(name, justify="left" if name == "team" else "right")
    per_team: dict[str, list[float]] = {}
    for (values, start), metrics in minutes.items():
        row = per_team.setdefault(str(values[0]), [0.0, 0.0, 0.0, 0.0])
        row[0] += metrics[0] / 1e9
        row[1] += metrics[1]
        if now - 3600 <= start < now:
            row[2] += metrics[0] / 1e9
        elif now - 7200 <= start < now - 3600:
            row[3] += metrics[0] / 1e9
    for team, (total, calls, last, before) in sorted(per_team.items()):
        ratio = last / before if before else 0.0
        change = (
            f"[bold red]x{ratio:.1f}[/bold red]"
            if ratio >= 3
            else (f"x{ratio:.1f}" if before else "")
        )
        table.add_row(
            team, f"{total:,.2f}", f"{calls:,.0f}", f"{last:,.2f}", f"{before:,.2f}", change
        )
    return table
