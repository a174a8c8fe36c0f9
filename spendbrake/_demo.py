"""``spendbrake demo``: the whole pipeline on a laptop, with nothing installed but us.

Starts the embedded broker, a fake Slack (or a real workspace) and a fake LiteLLM gateway
on 127.0.0.1, and the worker stages in-process, configured by ``spendbrake/demo.yaml``.
It publishes three weeks of simulated history through the producer SDK as fast as the
pipeline takes it (the detectors learn each key's hour-of-week baseline from it), then
plays the last hours live, compressed into about twenty seconds: a nightly batch job
starts looping in the afternoon, and the critical support bot surges. The batch key is
paused at the gateway; the bot is alerted and never paused. The live view reads spend from
``spend.rollups`` and the incidents from the action stage.

Event time ends at the latest 16:00 UTC that is not in the future, so the incidents land
in the afternoon, when batch keys are normally silent, whatever the time of the run.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from spendbrake.actions import outcome_line
from spendbrake.schemas import CALLS, COST, NUSD, Config, RollupRecord, UsageEvent, visible
from spendbrake.stages import (
    STAGES,
    ActionStage,
    DetectStage,
    IngestStage,
    StoreStage,
    Worker,
    WorkerSettings,
)
from spendbrake.streamer import RollupTotals

from ._broker import EmbeddedBroker, ensure_topics
from ._config_loader import load_config
from ._simulate import parse_incident, simulate
from .fakes.gateway import FakeGateway
from .fakes.slack import FakeSlack
from .sdk import SpendProducer

HOUR = 3600
#: Event time covered, and the part of it played live (paced) at the end.
HISTORY_S = 21 * 86400
LIVE_S = 4 * HOUR
#: The demo gives up waiting on a pipeline that has made no progress for this long.
STALL_S = 30.0
#: The hour of day (UTC) event time ends at.
END_HOUR = 16
MASTER_KEY = "sk-demo-master"


@dataclass
class DemoState:
    """What the live view shows, fed by the ingest's rollups and the action stage."""

    totals: RollupTotals = field(default_factory=RollupTotals)
    published: int = 0
    phase: str = "history"
    act: ActionStage | None = None
    gateway: FakeGateway | None = None

    def on_records(self, records: list[RollupRecord]) -> None:
        # The view shows hourly spend per team: keep only that (a view recomputed four
        # times a second over every minute window of three weeks costs seconds).
        self.totals.update(r for r in records if r.window_s == HOUR and r.dims == ("team",))


def run_demo(
    duration_s: float,
    rate: float,
    seed: int,
    console: Console,
    slack_token: str | None = None,
    slack_channel: str | None = None,
) -> int:
    return asyncio.run(_demo(duration_s, rate, seed, console, slack_token, slack_channel))


def demo_end(now: float) -> float:
    """The latest END_HOUR:00 UTC not after ``now``."""
    day = int(now // 86400) * 86400
    end = day + END_HOUR * HOUR
    return float(end if end <= now else end - 86400)


def demo_events(end_ts: float, rate: float, seed: int) -> Iterator[UsageEvent]:
    """Three weeks of traffic ending at ``end_ts``, with the two incidents in its last hours."""
    start_ts = end_ts - HISTORY_S
    hours = HISTORY_S // HOUR
    incidents = [
        parse_incident(
            "batch_runaway:api_key=research-nightly-summarizer,x=10,"
            f"start=+{hours - 3}h,duration=3h"
        ),
        parse_incident(f"spike:api_key=support-bot-prod,x=12,start=+{hours - 2}h,duration=2h"),
    ]
    return simulate(start_ts, HISTORY_S, rate_per_s=rate, seed=seed, incidents=incidents)


def demo_config(
    bootstrap: str, slack_url: str | None, slack_token: str, channel: str | None, gateway_url: str
) -> Config:
    env = {
        "SPENDBRAKE_BOOTSTRAP": bootstrap,
        "SLACK_BOT_TOKEN": slack_token,
        "GATEWAY_URL": gateway_url,
        "LITELLM_MASTER_KEY": MASTER_KEY,
    }
    if slack_url:
        env["SLACK_BASE_URL"] = slack_url
    if channel:
        env["SLACK_CHANNEL"] = channel
    path = resources.files("spendbrake").joinpath("demo.yaml")
    with resources.as_file(path) as file:
        return load_config(file, env=env)


async def _demo(
    duration_s: float,
    rate: float,
    seed: int,
    console: Console,
    slack_token: str | None,
    slack_channel: str | None,
) -> int:
    # SIGTERM (a `timeout`, a process manager) ends the demo as Ctrl-C does, through the
    # cleanup below: by default it would leave the broker it started running, orphaned.
    main = asyncio.current_task()
    if main is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    work = Path(tempfile.mkdtemp(prefix="spendbrake-demo-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    worker: Worker | None = None
    running: asyncio.Task[None] | None = None
    producer: SpendProducer | None = None
    slack = None if slack_token else FakeSlack(token="xoxb-demo").start()
    gateway = FakeGateway(master_key=MASTER_KEY, strict_key_format=False).start()
    where = "your Slack workspace" if slack is None else "a fake Slack"
    console.print(
        f"embedded broker on {broker.bootstrap_servers} (memory only), {where} and a fake "
        f"LiteLLM gateway on 127.0.0.1; config spendbrake/demo.yaml; work files in {work}"
    )
    try:
        config = demo_config(
            broker.bootstrap_servers,
            None if slack is None else slack.base_url,
            slack_token or "xoxb-demo",
            slack_channel,
            gateway.url,
        )
        await ensure_topics(
            broker.bootstrap_servers, config.kafka.topics.names(), config.kafka.partitions
        )
        end_ts = demo_end(time.time())
        live_from = end_ts - LIVE_S
        settings = WorkerSettings(
            state_dir=work / "state",
            flush_interval_s=0.5,
            checkpoint_interval_s=2.0,
            act_from="earliest",  # a new broker: every alert is the demo's own
            progress_s=0.0,  # the live view shows it
            # The embedded broker holds a group's first join for half the session: 5 s,
            # not the default's 15 (one worker, nothing to fail over to).
            session_timeout_s=10.0,
        )
        state = DemoState(gateway=gateway)
        worker = Worker(config, settings, STAGES, on_records=state.on_records)
        ingest, detect, act, store = worker.ingest, worker.detect, worker.act, worker.store
        state.act = act
        running = asyncio.create_task(worker.run())
        producer = SpendProducer(broker.bootstrap_servers, spill_path=work / "spill.jsonl")
        events = demo_events(end_ts, rate, seed)
        view = lambda: _view(state, end_ts)  # noqa: E731
        t0 = time.monotonic()
        with Live(view(), console=console, refresh_per_second=4) as live:
            pending: list[UsageEvent] = []
            # 1. History, as fast as the pipeline takes it.
            for event in events:
                if event.ts >= live_from:
                    pending.append(event)
                    break
                producer.emit(event)
                state.published += 1
                if state.published % 2000 == 0:
                    live.update(view())
                    await asyncio.sleep(0)
            await asyncio.to_thread(producer.flush, 60)
            published_s = time.monotonic() - t0

            def refresh() -> None:
                live.update(view())

            def progress() -> tuple[int, float, int, int]:
                return (
                    _consumed(ingest),
                    detect.watch.now,
                    len(act.outbox.incidents),
                    len(gateway.blocked_keys),
                )

            # The detectors learn three weeks of hours first: played while they are still at
            # it, the live hours would be judged late, all at once (and dated then).
            learned = await _wait_for(
                lambda: _consumed(ingest) >= state.published and _caught_up(detect, live_from),
                progress,
                refresh,
            )
            ingested_s = time.monotonic() - t0
            # 2. The last hours, live: event time at LIVE_S / duration_s times real speed.
            state.phase = "live"
            wall0 = time.monotonic()
            for event in [*pending, *events]:
                due = (event.ts - live_from) / LIVE_S * duration_s
                while time.monotonic() - wall0 < due:
                    live.update(view())
                    await asyncio.sleep(0.1)
                producer.emit(event)
                state.published += 1
            await asyncio.to_thread(producer.flush, 30)
            live_s = time.monotonic() - t0
            state.phase = "settling"
            settled = await _wait_for(lambda: _done(state), progress, refresh)
            settled_s = time.monotonic() - t0
            await asyncio.sleep(2.0)
            state.phase = "done"
            live.update(view())
        producer.close()
        worker.stop()
        await running
        console.print()
        incidents = list(act.outbox.incidents.values())
        console.print(
            f"published {state.published:,} events (three weeks, the last {LIVE_S // HOUR} hours "
            f"live); the worker wrote {ingest.rollups_out:,} rollup updates and "
            f"{ingest.dead_out} dead letters; {len(incidents)} incident(s) sent to {where}; "
            f"paused at the gateway: {', '.join(sorted(gateway.blocked_keys)) or 'nothing'}. "
            "Critical keys are alerted, never paused. Audit trail: the spend.actions topic."
        )
        if not (learned and settled):
            console.print(
                f"[yellow]note: the pipeline made no progress for {STALL_S:.0f} s before "
                + ("the detectors had learned the history" if not learned else "both effects")
                + "; what was caught by then is shown above[/yellow]"
            )
        report_path, chart_path = _showback(store, end_ts, work, console)
        console.print(
            f"timeline: history published at {published_s:.0f} s and rolled up at "
            f"{ingested_s:.0f} s, live part done at {live_s:.0f} s, effects settled at "
            f"{settled_s:.0f} s"
        )
        console.print(
            f"showback report: {report_path}\nchart: {chart_path}\nthe same from the store: "
            f"spendbrake report --store {store.path} --period {_month(end_ts)} --chart spend.png"
        )
        return 0
    finally:
        if producer is not None:
            producer.close(timeout_s=1.0)  # at once when interrupted (a no-op when done)
        if worker is not None and running is not None:
            # Interrupted: the stages save their state before the broker goes.
            worker.stop()
            await asyncio.wait([running], timeout=30)
        gateway.stop()
        if slack is not None:
            slack.stop()
        broker.stop()


def _month(ts: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(ts))


def _showback(store: StoreStage, end_ts: float, work: Path, console: Console) -> tuple[Path, Path]:
    """The month's showback report (text) and chart from the store the run filled."""
    from ._report import parse_period, report_from_store
    from ._report_render import render_table

    report_path, chart_path = work / "showback.txt", work / "spend-by-team.png"
    period = parse_period(_month(end_ts))
    report, _ = report_from_store(store.path, period, "team", now=end_ts, chart=chart_path)
    with report_path.open("w", encoding="utf-8") as handle:
        render_table(report, Console(file=handle, width=110, highlight=False))
    total = report["total"]
    console.print(
        f"showback {period.label}: ${total['cost_usd']:,.2f} over {total['calls']:,} calls; "
        + ", ".join(f"{r['team']} ${r['cost_usd']:,.2f}" for r in report["rows"])
    )
    return report_path, chart_path


async def _wait_for(
    done: Callable[[], bool], progress: Callable[[], object], refresh: Callable[[], None]
) -> bool:
    """Wait until ``done()`` for as long as ``progress()`` keeps changing.

    Why not a deadline: on a slow or busy machine the stages take longer, and a demo that
    stops waiting shows no incident at all; a pipeline that has stopped moving is given up
    on after ``STALL_S``.
    """
    last, moved = progress(), time.monotonic()
    while not done():
        refresh()
        await asyncio.sleep(0.25)
        now = progress()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            return False
    return True


def _caught_up(detect: DetectStage, live_from: float) -> bool:
    """The detect stage has read the history's rollups and learned its hours."""
    watch = detect.watch
    return watch.now >= live_from - 600 and not watch.behind


def _consumed(worker: IngestStage) -> int:
    return sum(p.stats.records for p in worker.processors.values())


def _done(state: DemoState) -> bool:
    """The runaway paused and the critical surge alerted."""
    if state.act is None or state.gateway is None:
        return False
    scopes = [i.scope for i in state.act.outbox.incidents.values()]
    return bool(state.gateway.blocked_keys) and any("support-bot" in s for s in scopes)


def _view(state: DemoState, end_ts: float) -> Group:
    return Group(_spend(state, end_ts), _incidents(state))


def _incidents(state: DemoState) -> Group:
    """The latest incidents as the on-call sees them: scope, why, and what was done."""
    lines: list[Any] = [Text("incidents sent to Slack", style="bold")]
    if state.act is not None:
        outbox = state.act.outbox
        # In the order they were caught (event time), each at its first detection.
        shown = sorted(outbox.incidents.values(), key=lambda i: i.detected_at or "")[-6:]
        for incident in shown:
            alert = incident.alert
            when = str(incident.detected_at or "")[5:16].replace("T", " ")
            severity = alert.severity
            style = "bold red" if severity == "critical" else "yellow"
            # Text, not markup; visible(): scope values and reasons are the events' text.
            lines.append(Text.assemble((f"{when} {severity:<8} ", style), visible(incident.scope)))
            lines.append(Text("    " + visible(alert.reason)[:160], style="dim"))
            lines.append(Text("    -> " + visible(outcome_line(incident, alert, outbox.dry_run))))
    if len(lines) == 1:
        lines.append(Text("    none yet", style="dim"))
    if state.gateway is not None and state.gateway.blocked_keys:
        paused = visible(", ".join(sorted(state.gateway.blocked_keys)))
        lines.append(Text(f"paused at the gateway: {paused}", style="bold"))
    return Group(*lines)


def _spend(state: DemoState, end_ts: float) -> Table:
    hours = state.totals.totals(("team",), HOUR)
    # "Now" is as far as the worker's rollups reach, not what was published.
    now = max((start + HOUR for _, start in hours), default=end_ts - HISTORY_S)
    stamp = time.strftime("%a %d %b %H:%M", time.gmtime(now))
    table = Table(
        title=f"spend per team from spend.rollups: {state.phase}, event time {stamp} UTC "
        f"({state.published:,} events published)",
    )
    for name in ("team", "3 weeks $", "calls", "last hour $", "same hour last week $", "change"):
        table.add_column(name, justify="left" if name == "team" else "right")
    per_team: dict[str, list[float]] = {}
    week = 7 * 86400
    for (values, start), metrics in hours.items():
        row = per_team.setdefault(str(values[0]), [0.0, 0.0, 0.0, 0.0])
        usd = metrics[COST] / NUSD
        row[0] += usd
        row[1] += metrics[CALLS]
        if start == now - HOUR:
            row[2] += usd
        elif start == now - HOUR - week:
            row[3] += usd
    for team, (total, calls, last, before) in sorted(per_team.items()):
        ratio = last / before if before else 0.0
        change = (
            f"[bold red]x{ratio:.1f}[/bold red]"
            if ratio >= 3
            else (f"x{ratio:.1f}" if before else "")
        )
        table.add_row(
            Text(visible(team)),
            f"{total:,.2f}",
            f"{calls:,.0f}",
            f"{last:,.2f}",
            f"{before:,.2f}",
            change,
        )
    return table
