"""The ``spendbrake`` command. Each command parses its options and calls a library
function that the tests call too; nothing here holds logic of its own."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import time
from typing import IO, Any

import click
from rich.console import Console

from spendbrake.schemas import (
    Alert,
    Config,
    ConfigError,
    InvalidEvent,
    SpendBrakeError,
    check_bootstrap,
    encode_alert,
    visible,
)

from . import __version__

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout_console() -> Console:
    """The console tables go to on stdout: a terminal's width on a terminal; off one (a file,
    a pipe, ``less``), wide enough for any row. rich assumes 80 columns off a terminal, and
    cut the replay table's dates and scopes to ``2026-09-…`` and ``team=res…`` there."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=100_000)


#: Sections a command that neither reads Kafka nor posts to Slack or a gateway leaves
#: unread (``load_config(unread=...)``): an operator's production file replays on a laptop
#: without its brokers' and tokens' ``${VAR}``.
OFFLINE_UNREAD = ("kafka", "slack", "gateway", "digest")


def _load(
    config_path: str | None, bootstrap: str | None = None, unread: tuple[str, ...] = ()
) -> Config:
    from ._config_loader import load_config

    try:
        config = load_config(config_path, unread=unread)
    except ConfigError as exc:
        # The problems as text: a value "[/bogus]" in the file crashed rich's markup.
        err.print("[red]invalid config[/red]", markup=True)
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    if bootstrap:
        config = config.model_copy(
            update={"kafka": config.kafka.model_copy(update={"bootstrap_servers": bootstrap})}
        )
    return config


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType):
    """A span of time as seconds, from ``min_s`` to ``max_s``: a number with s, m, h, d or w
    (90s, 30m, 2h, 28d, 5w), or a bare number of seconds."""

    name = "duration"

    def __init__(self, min_s: float = 0.0, max_s: float = math.inf) -> None:
        self.min_s = min_s
        self.max_s = max_s

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        text = str(value).strip()
        try:
            unit = _UNITS.get(text[-1:])
            seconds = float(text[:-1]) * unit if unit else float(text)
        except ValueError:
            self.fail(f"{value!r}: use a number with s/m/h/d/w, e.g. 2h or 28d", param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite span of time", param, ctx)
        if not self.min_s <= seconds <= self.max_s:
            if self.max_s < math.inf:
                within = f"{_span_text(self.min_s)} to {_span_text(self.max_s)}"
                self.fail(f"{value!r} is outside {within}", param, ctx)
            below = "negative" if self.min_s == 0 else f"under {_span_text(self.min_s)}"
            self.fail(f"{value!r} is {below}", param, ctx)
        return seconds


def _span_text(seconds: float) -> str:
    """``seconds`` as ``Duration`` reads it, in the largest unit that keeps it whole: 10m, 6s."""
    for unit, size in reversed(_UNITS.items()):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class OutputFile(click.Path):
    """A file the command writes (``-``: stdout, where ``allow_dash``): refused before the
    command runs if it is a directory, is not writable, or its directory is missing."""

    def __init__(self, allow_dash: bool = False) -> None:
        super().__init__(dir_okay=False, writable=True, allow_dash=allow_dash)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if self.allow_dash and path == "-":
            return path
        where = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(where):
            self.fail(f"{value!r}: directory {where!r} does not exist", param, ctx)
        if not os.access(where, os.W_OK | os.X_OK):
            self.fail(f"{value!r}: directory {where!r} is not writable", param, ctx)
        return path


class Number(click.FloatRange):
    """``click.FloatRange`` that refuses nan and infinities too: nan passes any range."""

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = float(super().convert(value, param, ctx))
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="SPENDBRAKE_CONFIG",
    help="Operator YAML config (default: built-in defaults). Env: SPENDBRAKE_CONFIG.",
)


def _bootstrap_checked(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--bootstrap as the config's bootstrap_servers is checked: a port that is not a
    number reached the Kafka client, and ``produce`` spilled everything as an outage."""
    if value is None:
        return None
    try:
        return check_bootstrap(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


bootstrap_option = click.option(
    "--bootstrap",
    callback=_bootstrap_checked,
    help="Kafka bootstrap servers, overriding the config. Env: SPENDBRAKE_BOOTSTRAP.",
)


def store_options(command: Any) -> Any:
    """--store and --state-dir: where a reader (report, digest) finds the DuckDB store."""
    command = click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        envvar="SPENDBRAKE_STATE_DIR",
        default=".spendbrake-state",
        show_default=True,
        help="Find the store at <state-dir>/store/spend.duckdb (unless --store or store.path).",
    )(command)
    return click.option(
        "--store", "store", type=click.Path(dir_okay=False), help="The DuckDB store file."
    )(command)


def _store_file(config: Config, store: str | None, state_dir: str) -> Any:
    from pathlib import Path

    from spendbrake.stages import store_path

    return Path(store) if store else store_path(config, state_dir)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="spendbrake")
def main() -> None:
    """SpendBrake: catch runaway AI spend live.

    Producers publish one usage event per LLM call to Kafka; SpendBrake rolls
    spend up in event time, detects runaways and budget burn, alerts Slack and
    pauses batch keys at the gateway. Start with `spendbrake demo`.
    """
    # A command that says what failed itself (a broker unreachable: "spilling to ...")
    # does not echo the Kafka client's own "Unable connect to ..." before it: with no
    # handler configured, Python printed that record bare. The worker's logging
    # (``setup_logging``) still shows it, on its root handler.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9092,
    show_default=True,
    help="Port (0 picks a free one).",
)
@config_option
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Partitions per topic (default: kafka.partitions).",
)
@click.option("--log", "log_path", type=OutputFile(), help="Write broker output here.")
def broker(
    host: str, port: int, config_path: str | None, partitions: int | None, log_path: str | None
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory only) and create the topics.

    Stops cleanly on Ctrl-C. Everything it holds is lost when it stops.
    """
    from ._broker import BrokerError, EmbeddedBroker, ensure_topics

    config = _load(config_path)
    embedded = EmbeddedBroker(port=port, host=host, log_path=log_path)
    try:
        embedded.start()
        created = asyncio.run(
            ensure_topics(
                embedded.bootstrap_servers,
                config.kafka.topics.names(),
                partitions or config.kafka.partitions,
            )
        )
    except BrokerError as exc:
        embedded.stop()
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    stop = {"now": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    # Before the banner that says Ctrl-C stops it: a Ctrl-C right after it is a clean stop.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    err.print(
        f"[green]broker listening on {embedded.bootstrap_servers}[/green] (memory only)\n"
        f"topics: {', '.join(config.kafka.topics.names())}"
        + (f" (created {len(created)})" if created else "")
        + f"\nexport SPENDBRAKE_BOOTSTRAP={embedded.bootstrap_servers}\nCtrl-C stops it."
    )
    try:
        while not stop["now"] and embedded.running:
            time.sleep(0.2)
    finally:
        was_running = embedded.running
        embedded.stop()
    if not was_running and not stop["now"]:
        err.print("[red]the broker exited on its own[/red]")
        sys.exit(1)
    err.print("broker stopped")


def _parse_start(value: str | None) -> float:
    if value is None:
        return time.time()
    from spendbrake.schemas import parse_ts

    text = value if "T" in value or " " in value else value + "T00:00:00Z"
    try:
        return parse_ts(text)
    except InvalidEvent as exc:  # its reason, without the event field's name ("ts: ...")
        # A date alone got a time of day added: parse_ts quoted "yesterdayT00:00:00Z".
        reason = (
            exc.reason
            if text == value
            else f"{value!r} is not a date (2026-10-01) or an RFC 3339 time (2026-10-01T09:30:00Z)"
        )
        raise click.BadParameter(reason, param_hint="--start") from None


@main.command()
@click.option(
    "--start", help="Event time of the first event: 2026-10-01 or RFC 3339 (default: now)."
)
@click.option(
    "--duration",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Simulated span: 90s, 30m, 2h, 28d, 5w.",
)
@click.option(
    "--rate",
    type=Number(min=0),
    default=20.0,
    show_default=True,
    help="Mean calls per second over a week.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same events).")
@click.option(
    "--inject",
    multiple=True,
    metavar="SPEC",
    help="Incident, repeatable: KIND:key=value,... e.g. "
    "runaway:team=search,feature=agent,x=20,start=+2h,duration=3h (x: the kind's "
    "factor, on calls, on calls a week for creep, on tokens a call for prompt_change; "
    "start: a time or an offset from --start, default the middle; the incident must "
    "overlap --duration). Kinds: runaway, batch_runaway, spike, launch, creep, prompt_change.",
)
@click.option(
    "--priced-fraction",
    type=Number(0, 1),
    default=0.5,
    show_default=True,
    help="Share of events that carry cost_usd.",
)
@click.option(
    "--out",
    type=OutputFile(allow_dash=True),
    help="Write .jsonl here ('-' = stdout) instead of Kafka.",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Pace events at their event time (default: as fast as possible).",
)
@config_option
@bootstrap_option
def simulate(
    start: str | None,
    duration: float,
    rate: float,
    seed: int,
    inject: tuple[str, ...],
    priced_fraction: float,
    out: str | None,
    realtime: bool,
    config_path: str | None,
    bootstrap: str | None,
) -> None:
    """Generate realistic LLM usage traffic to Kafka or a .jsonl file.

    Several teams, features, keys and workload classes; diurnal and weekly
    seasonality, Poisson arrivals, lognormal call sizes, legitimate bursts, and
    optional injected incidents. Weeks of history take seconds unless --realtime.

    To Kafka, exit 3 if the broker did not take every event (the rest wait in the
    spill file, for the next producer run to send).
    """
    from ._simulate import parse_incident
    from ._simulate import simulate as generate

    start_ts = _parse_start(start)
    try:
        incidents = [parse_incident(spec) for spec in inject]
        # Checks its arguments before the first event: the options' types have checked the
        # rest, so what it refuses is an incident that matches no key of the traffic.
        events = generate(
            start_ts,
            duration,
            rate_per_s=rate,
            seed=seed,
            incidents=incidents,
            priced_fraction=priced_fraction,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--inject") from None
    if realtime:
        events = _paced(events, start_ts)
    if out is not None:
        from spendbrake.schemas import encode_event

        handle: IO[bytes] = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
        count = 0
        with _progress(f"writing {out}") as tick:
            for event in events:
                handle.write(encode_event(event) + b"\n")
                count += 1
                if count % 5000 == 0:
                    tick(count)
        if handle is not sys.stdout.buffer:
            handle.close()
        err.print(f"wrote {count} events to {out}")
        return
    from spendbrake.schemas import MAX_FUTURE_S
    from spendbrake.sdk import SpendProducer

    from ._produce import publish

    # The latest event's lead on the clock when it is sent; the worker dead-letters an
    # event more than MAX_FUTURE_S after its record, and the producer refuses it.
    ahead = (start_ts if realtime else start_ts + duration) - time.time()
    if ahead > MAX_FUTURE_S:
        raise click.BadParameter(
            f"the traffic would reach {ahead / 3600:.1f} h past the time it is sent, and events "
            f"more than {MAX_FUTURE_S / 3600:g} h ahead are refused: start earlier, shorten "
            "--duration, or pace it with --realtime",
            param_hint="--start/--duration",
        )
    config = _load(config_path, bootstrap)
    producer = SpendProducer(topic=config.kafka.topics.events, kafka=config.kafka)
    with _progress(f"publishing to {config.kafka.bootstrap_servers}") as tick:
        count = publish(events, producer, tick)
    delivered = producer.close(timeout_s=60)
    _report_delivery(producer, count, delivered)


def _paced(events: Any, start_ts: float) -> Any:
    wall0 = time.time()
    for event in events:
        delay = (event.ts - start_ts) - (time.time() - wall0)
        if delay > 0:
            time.sleep(delay)
        yield event


def _report_delivery(producer: Any, count: int, delivered: bool) -> None:
    if delivered:
        err.print(f"published {count} events to {producer.topic} on {producer.bootstrap_servers}")
        return
    err.print(
        f"[yellow]published {producer.stats.delivered} of {count} events; the rest wait in "
        f"{producer.spill_path}; the next producer run with that spill file sends them[/yellow]"
    )
    sys.exit(3)


def _name_first(named: list[str], total: int, how_to_see: str = "") -> None:
    """The first few of ``total`` refused records or lines, one indented line each (as
    given: caller text shown with ``visible``), then how many more (and ``how_to_see``
    them)."""
    for line in named:
        err.print(f"  {visible(line)}", markup=False, highlight=False)
    if total > len(named):
        err.print(f"  ({total - len(named):,} more{how_to_see})", markup=False)


class _progress:
    """A running count on stderr: a spinner on a terminal; elsewhere (a CI log, a file, a
    pipe to ``tee``) a plain line every ``every_s`` seconds, so a long run is seen to move."""

    #: Seconds between two plain progress lines off a terminal.
    every_s = 30.0

    def __init__(self, label: str) -> None:
        self.label = label
        self._status: Any = None
        self._next = 0.0

    def __enter__(self) -> Any:
        if err.is_terminal:
            self._status = err.status(f"{self.label}: 0 events")
            self._status.__enter__()
        self._next = time.monotonic() + self.every_s
        return self.tick

    def tick(self, count: int) -> None:
        if self._status is not None:
            self._status.update(f"{self.label}: {count:,} events")
        elif time.monotonic() >= self._next:
            self._next = time.monotonic() + self.every_s
            err.print(f"{self.label}: {count:,} events", markup=False)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


@main.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@config_option
@bootstrap_option
@click.option(
    "--max-errors",
    default=20,
    show_default=True,
    help="Bad lines printed in full (all are counted).",
)
def produce(source: str, config_path: str | None, bootstrap: str | None, max_errors: int) -> None:
    """Publish a .jsonl file of usage events (or '-' for stdin).

    Bad lines are reported with their line number and reason and skipped; good
    lines still go out. Spilled events the broker refuses as too large are counted and
    the first few named (they are set aside in the spill's .rejected file, never sent).
    Exit code: 0 all sent, 1 some lines were bad or events refused, 3 the broker did not
    take everything (the rest is spilled for later).
    """
    from spendbrake.sdk import SpendProducer

    from ._produce import produce_lines

    config = _load(config_path, bootstrap)
    shown = 0

    def on_bad(number: int, exc: Exception) -> None:
        nonlocal shown
        shown += 1
        if shown <= max_errors:
            err.print(f"{source}:{number}: {visible(str(exc))}", markup=False, highlight=False)

    handle = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    producer = SpendProducer(topic=config.kafka.topics.events, kafka=config.kafka)
    try:
        with _progress(f"publishing {source}") as tick:
            report = produce_lines(handle, producer, on_bad=on_bad, on_sent=tick)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    delivered = producer.close(timeout_s=60)
    if report.bad:
        more = (
            f" ({len(report.bad) - max_errors} not shown)" if len(report.bad) > max_errors else ""
        )
        err.print(f"[yellow]{len(report.bad)} bad line(s) of {report.lines}{more}[/yellow]")
    rejected = producer.stats.rejected
    if rejected:
        err.print(
            f"{rejected} spilled event(s) refused by the broker as too large, set aside in "
            f"{producer.rejected_path} (not sent again):",
            style="yellow",
            markup=False,
            highlight=False,
        )
        _name_first(producer.stats.first_rejected, rejected)
    if not delivered:
        _report_delivery(producer, report.sent, delivered)
    err.print(f"published {report.sent} events to {producer.topic} on {producer.bootstrap_servers}")
    if producer.stats.replayed:
        # The spill file outlives the run: what an earlier run could not send goes out now.
        err.print(
            f"also sent {producer.stats.replayed} spilled event(s) from {producer.spill_path} "
            "(kept by this run or an earlier one when the broker did not take them)",
            markup=False,
            highlight=False,
        )
    sys.exit(1 if report.bad or rejected else 0)


@main.command()
@config_option
@bootstrap_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    envvar="SPENDBRAKE_STATE_DIR",
    default=".spendbrake-state",
    show_default=True,
    help="Where partition snapshots live (share it between workers). Env: SPENDBRAKE_STATE_DIR.",
)
@click.option(
    "--flush-interval",
    type=Number(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between rollup updates.",
)
@click.option(
    "--checkpoint-interval",
    type=Number(min=0),
    default=5.0,
    show_default=True,
    help="Seconds between snapshots.",
)
@click.option(
    "--lateness",
    type=Duration(),
    default="10m",
    show_default=True,
    help="Allowed lateness of events.",
)
@click.option("--group", help="Consumer group (default: kafka.group_id).")
@click.option(
    "--stages",
    default="ingest,detect,act,store",
    show_default=True,
    help="Stages to run in this process: ingest (events -> rollups), detect (rollups -> "
    "alerts), act (alerts -> Slack, gateway pauses, audit on the actions topic), store "
    "(hourly/daily rollups, traces, alerts, audit -> the DuckDB report store).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9464,
    show_default=True,
    help="Serve Prometheus /metrics of the stages run on --metrics-host:PORT (0: off).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address /metrics listens on: 0.0.0.0 in a container, whose own loopback no "
    "Prometheus can reach. /metrics has no authentication: keep it off public networks.",
)
@click.option(
    "--session-timeout",
    type=Duration(6, 1800),
    default="30s",
    show_default=True,
    help="A worker silent this long leaves the consumer group and its partitions move to the "
    "others: how long a crashed worker's partitions wait (6s to 30m, the broker's limits).",
)
@click.option(
    "--reload-interval",
    "reload_s",
    type=Number(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between checks of --config for changes (0: only on SIGHUP). A valid "
    "change is applied live; a broken one is rejected and the running config kept.",
)
@click.option(
    "--progress-interval",
    "progress_s",
    type=Duration(0, 86400),
    default="60s",
    show_default=True,
    help="How often each stage logs what it did and what is left (records read and behind, "
    'event time, alerts, effects), one line per stage, "caught up" when idle (0: never).',
)
@click.option(
    "--reset-partition",
    "reset_partitions",
    type=click.IntRange(min=0),
    multiple=True,
    help="Set aside the saved state of this events partition (repeatable) and rebuild it "
    "from the events topic: the way out when the worker refuses to start because that state "
    "is unreadable. Exact while the topic still holds all of the partition.",
)
@click.option(
    "--act-from",
    type=click.Choice(["saved", "earliest", "latest"]),
    default="saved",
    show_default=True,
    help="Where the act stage reads alerts from when it has no saved state: saved refuses "
    "to start if the alerts topic holds any (acting again would re-post them and re-pause "
    "keys); earliest acts on them all; latest on new ones only.",
)
def worker(
    config_path: str | None,
    bootstrap: str | None,
    state_dir: str,
    flush_interval: float,
    checkpoint_interval: float,
    lateness: float,
    group: str | None,
    stages: str,
    metrics_port: int,
    metrics_host: str,
    session_timeout: float,
    reload_s: float,
    progress_s: float,
    reset_partitions: tuple[int, ...],
    act_from: str,
) -> None:
    """Run the live pipeline: exact spend rollups, then detectors, budgets and policies.

    ingest: reads kafka.topics.events in the consumer group, sends bad records to the
    DLQ topic with their reason, drops duplicates by event_id, prices unpriced calls,
    and writes absolute per-window totals to the rollups topic.
    detect: reads every rollups partition (run ONE per deployment), runs the configured
    detectors and budgets, and writes alert records (policies applied) to the alerts topic.
    act: reads the alerts (run ONE per deployment), posts to Slack (slack.token), pauses
    keys at the gateway (gateway.*; only keys the config's keys section lets be paused,
    checked again here whatever the record says), audits each effect on the actions
    topic; undelivered effects are retried durably across restarts.
    store: keeps hourly and daily rollups, trace costs, alerts and audit records in a
    DuckDB file (store.path, default <state-dir>/store/spend.duckdb; run ONE per store)
    for `spendbrake report`, exactly once: rows and offsets commit together.
    Each keeps its state with its input offsets in --state-dir and stops cleanly
    (with a final snapshot) on Ctrl-C or SIGTERM. A change to --config (or SIGHUP) is
    validated and applied live, keeping baselines and budget spend; a broken file is
    rejected (logged, posted once to slack.channel) and the running config stays.
    """
    from pathlib import Path

    from spendbrake.stages import WorkerSettings, parse_stages, run_worker, tune_gc

    from ._logs import setup_logging

    setup_logging()

    def overrides(config: Config) -> Config:
        kafka = config.kafka
        if bootstrap:
            kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap})
        if group:
            kafka = kafka.model_copy(update={"group_id": group})
        return config.model_copy(update={"kafka": kafka})

    config = overrides(_load(config_path))
    settings = WorkerSettings(
        state_dir=Path(state_dir),
        flush_interval_s=flush_interval,
        checkpoint_interval_s=checkpoint_interval,
        lateness_s=lateness,
        session_timeout_s=session_timeout,
        metrics_port=metrics_port or None,
        metrics_host=metrics_host,
        act_from=act_from,
        progress_s=progress_s,
    )
    try:
        chosen = parse_stages(stages)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stages") from None
    if reset_partitions:
        asyncio.run(
            _reset_partitions(settings.state_dir, config.kafka.topics.events, reset_partitions)
        )
    tune_gc()
    try:
        asyncio.run(
            run_worker(
                config,
                settings,
                chosen,
                config_path=config_path or None,
                reload_s=reload_s,
                overrides=overrides,
                signals=True,
                create_topics=True,
            )
        )
    except SpendBrakeError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)
    # Objects frozen by tune_gc are never freed at exit, and DuckDB's bindings (the store
    # stage) then print "nanobind: leaked ..." on the way out.
    import gc

    gc.unfreeze()
    err.print("worker stopped")


async def _reset_partitions(state_dir: Any, topic: str, partitions: tuple[int, ...]) -> None:
    from spendbrake.stages import reset_partition

    for partition in partitions:
        try:
            where, aside = await reset_partition(state_dir, topic, partition)
        except TimeoutError as exc:
            raise click.UsageError(f"--reset-partition {partition}: {exc}") from None
        if aside is None:
            err.print(f"partition {partition}: no saved state in {where}; nothing to reset")
        else:
            err.print(
                f"partition {partition}: saved state moved to {aside}; it is rebuilt from the "
                f"start of {topic}"
            )


def _say(line: str) -> None:
    err.print(line, markup=False, highlight=False)


@main.command()
@click.argument("keys", nargs=-1)
@click.option(
    "--team",
    "teams",
    multiple=True,
    help="Unblock a team (gateway team id) blocked at the gateway; SpendBrake pauses keys, "
    "never teams, so the keys it paused stay paused: name them.",
)
@config_option
@bootstrap_option
@click.option(
    "--reason",
    default="resumed by an operator",
    show_default=True,
    help="Why, for the audit record.",
)
def resume(
    keys: tuple[str, ...],
    teams: tuple[str, ...],
    config_path: str | None,
    bootstrap: str | None,
    reason: str,
) -> None:
    """Unblock paused API keys (or --team) at the gateway, and audit it on the actions topic.

    Calls the gateway in the config (gateway.kind, url, master_key or secret) with a few
    retries; unblocking a key that is not blocked is fine. An operator's decision: any key
    may be named, and the audit records it as manual (kind and incident "manual", source
    cli:USER). Prints one line per target (ok, dry_run or failed, with the gateway's
    answer), then where the audit went; a running action stage reads it and says so in
    each incident thread that paused the key. Exit code 0 when every target is unblocked
    and audited, 1 otherwise. A KEY starting with "-" goes after "--".
    """
    from ._resume import resume as run_resume

    if not keys and not teams:
        raise click.UsageError("name at least one KEY or --team")
    config = _load(config_path, bootstrap)
    targets = [("key", k) for k in keys] + [("team", t) for t in teams]
    try:
        # Text, not markup: "summarizer[prod]" would print as "summarizer", "[/x]" raise.
        ok = asyncio.run(run_resume(config, targets, reason, _say))  # type: ignore[arg-type]
    except ConfigError as exc:
        _say(f"cannot resume: {exc}")
        sys.exit(1)
    sys.exit(0 if ok else 1)


@main.command()
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "table"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one alert record per line on stdout; table: a readable summary.",
)
@click.option(
    "--lateness",
    type=Duration(),
    default="10m",
    show_default=True,
    help="Allowed lateness of events.",
)
@click.option(
    "--sort",
    "sort_lines",
    is_flag=True,
    help="Replay in event-time order, not file order: for a file that is not sorted by ts "
    "(reads it all into memory first, about its size).",
)
@click.option(
    "--jobs",
    type=click.Choice(["auto", "1", "2"]),
    default="auto",
    show_default=True,
    help="2: roll up in a second process while this one runs the detectors (about 0.6x "
    "the time on two free cores; the same output); auto: 2 for a file of 32 MiB or more "
    "(about 100k events) on a machine with two cores, else 1.",
)
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Rejected lines shown with their reason (all are counted).",
)
def replay(
    events_file: str,
    config_path: str | None,
    fmt: str,
    lateness: float,
    sort_lines: bool,
    jobs: str,
    max_errors: int,
) -> None:
    """Show every alert and action a config would have produced on past events.

    EVENTS_FILE holds usage events, one contract v1 JSON object a line (docs/contract.md;
    what `spendbrake simulate --out` writes and `spendbrake produce` sends, not a
    gateway's own log format), gzip-compressed or not; '-' reads stdin.

    Runs the worker's own validation, dedupe, pricing, rollups, detectors, budgets and
    policies in-process, in the file's order (--sort: in event-time order), with no
    broker: the config's kafka, slack, gateway and digest sections are not read (their
    ${VAR} need not be set; `spendbrake validate` checks them). Alerts go to stdout;
    progress and a summary go to stderr. Exit code 0 (also when nothing fired); 1 when the
    file held no valid event at all (empty, or every line rejected: another format?), since
    then nothing was judged.

    \b
    Example: spendbrake replay last-month.jsonl --config spendbrake.yaml --format table
    """
    import gzip
    import time

    from ._replay import ReplayStats, by_event_time, replay_lines

    config = _load(config_path, unread=OFFLINE_UNREAD)
    stats = ReplayStats()
    source = sys.stdin.buffer if events_file == "-" else open(events_file, "rb")  # noqa: SIM115
    handle: Any = source
    peek = getattr(source, "peek", None)  # a BytesIO standing in for stdin has none
    if peek is not None and peek(2)[:2] == b"\x1f\x8b":  # gzip's magic: a kept export
        handle = gzip.GzipFile(fileobj=source, mode="rb")
    started = time.perf_counter()
    rows: list[Alert] = []
    try:
        lines: Any = handle
        if sort_lines:
            err.print(f"sorting {events_file} by event time ...")
            lines = by_event_time(handle)
        processes = _replay_jobs(jobs, handle)
        with _progress(f"replaying {events_file}") as tick:
            alerts = replay_lines(
                lines,
                config,
                lateness_s=lateness,
                stats=stats,
                progress=tick,
                jobs=processes,
                max_rejected=max_errors,
            )
            for alert in alerts:
                if fmt == "jsonl":
                    sys.stdout.buffer.write(encode_alert(alert) + b"\n")
                else:
                    rows.append(alert)
    finally:
        if source is not sys.stdin.buffer:
            handle.close()
            source.close()
    elapsed = time.perf_counter() - started
    if fmt == "table":
        _alert_table(rows)
    dead = sum(stats.dead.values())
    err.print(
        f"{stats.lines:,} events in {elapsed:.1f}s ({stats.lines / max(elapsed, 1e-9):,.0f}/s): "
        f"{stats.valid:,} valid, {stats.duplicates:,} duplicates, {stats.late:,} late, "
        f"{dead:,} rejected; {stats.alerts} alert(s)"
        + ("; rolled up in a second process (--jobs 1: one)" if processes > 1 else "")
    )
    for field_name, count in sorted(stats.dead.items()):
        err.print(f"  rejected for {field_name}: {count:,}")
    # Sorted lines are numbered in event-time order, not the file's.
    _name_first(
        [("" if sort_lines else f"line {number}: ") + reason for number, reason in stats.rejected],
        dead,
        "; --max-errors N shows more",
    )
    if stats.unpriced:
        # Budgets and baselines saw them as $0: spend undercounted, unsaid (the live ingest
        # sends an unpriced_model notice).
        models = sorted(stats.unpriced_models.items(), key=lambda m: -m[1])
        err.print(
            f"note: {stats.unpriced:,} events of models with no price were counted as $0 ("
            + ", ".join(f"{name}: {n:,}" for name, n in models[:5])
            + (f" and {len(models) - 5} more" if len(models) > 5 else "")
            + "); give their prices under pricing.models, or send cost_usd with each event",
            markup=False,
            highlight=False,
        )
    if stats.late and not sort_lines:
        err.print(
            f"note: {stats.late:,} events came more than {_span_text(lateness)} after later ones "
            "in the file and were counted as late corrections, as the live engine counts events "
            "that arrive so; if the file is just not sorted by ts, --sort replays it in event-time "
            "order"
        )
    if not stats.valid:
        # "0 alert(s)" and exit 0 read as "this config fires nothing on these events".
        what = "is empty" if not stats.lines else f"has no valid event ({dead:,} rejected)"
        err.print(f"error: {events_file} {what}: nothing was replayed", markup=False)
        sys.exit(1)


def _replay_jobs(jobs: str, handle: Any) -> int:
    """``--jobs``: auto is 2 for a large regular file where a second core and a child
    process are to be had (it starts in about a quarter of a second), else 1."""
    if jobs != "auto":
        return int(jobs)
    if os.name != "posix" or not sys.executable or len(os.sched_getaffinity(0)) < 2:
        return 1
    try:
        size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        return 1
    return 2 if size >= 32 * 2**20 else 1


def _alert_table(rows: list[Alert]) -> None:
    from rich.table import Table

    from spendbrake.schemas import parse_ts

    from ._report_render import terminal_text

    if not rows:
        # An empty frame on stdout read as a table that failed to fill.
        _stdout_console().print("no alerts: this config would have sent nothing on these events")
        return

    table = Table(title="alerts the engine would have sent", title_justify="left")
    # On a narrow terminal the date and time stay whole (16 characters) and long scopes
    # and key lists wrap rather than end in an ellipsis: a cut value names nothing.
    table.add_column("detected", no_wrap=True, min_width=16)
    for column in ("kind", "scope", "observed", "expected", "severity", "action"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # Scope values and keys are the events' text: shown literally, never as markup.
        scope = ",".join(f"{k}={v}" for k, v in row.scope.items()) or "global"
        expected = "-" if row.expected_usd is None else f"${row.expected_usd:,.2f}"
        if row.kind == "anomaly" and row.expected_usd is not None:
            start, end, at = map(parse_ts, (row.window_start, row.window_end, row.detected_at))
            if start < at < end:
                # Caught early in its hour: its spend so far against the share of the usual
                # hour passed by then, as Slack says it ("$2.81 vs $3.45" read as no problem).
                expected = f"${row.expected_usd * (at - start) / (end - start):,.2f} by then"
        action = row.action + (f" {', '.join(row.targets)}" if row.targets else "")
        if row.held_keys:  # a pause policy's confirm_s: paused by a follow-up, if it lasts
            action += f" (held: {', '.join(row.held_keys)})"
        table.add_row(
            row.detected_at[:16].replace("T", " "),
            row.kind if row.seq == 0 else f"{row.kind} (follow-up)",
            terminal_text(scope),
            f"${row.observed_usd:,.2f}",
            expected,
            row.severity,
            terminal_text(action),
        )
    _stdout_console().print(table)


@main.command()
@click.option(
    "--period",
    required=True,
    help="A month 2026-10, an ISO week 2026-W41 (Monday start) or a day 2026-10-05 (UTC).",
)
@click.option(
    "--by",
    type=click.Choice(["team", "feature", "model", "customer"]),
    default="team",
    show_default=True,
    help="The dimension to show back by.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: readable summary; csv: one line per group; json: everything.",
)
@click.option(
    "--chart",
    type=OutputFile(),
    help="Also write a PNG bar chart of spend by team, stacked by model.",
)
@store_options
@config_option
@click.option(
    "--top", type=click.IntRange(min=0), default=10, show_default=True, help="Customers to list."
)
def report(
    period: str,
    by: str,
    fmt: str,
    chart: str | None,
    store: str | None,
    state_dir: str,
    config_path: str | None,
    top: int,
) -> None:
    """Showback for a period from the rollup store (`spendbrake worker --stages ...,store`).

    Per team, feature, model or customer: calls, input / cached / output tokens, cost,
    trend vs the prior period and share of the total. Then the cache hit ratio and what
    caching saved (cached tokens at the full input price vs the cache-read price), cost
    per outcome, top customers, cost per trace (p50 / p95 / max), a projection to the
    period end and the year end (its assumptions printed), and the period's alerts and
    actions.

    \b
    Example: spendbrake report --period 2026-10 --by team --chart spend.png
    """

    from spendbrake.schemas import PriceTable

    from ._report import ReportError, parse_period, report_from_store
    from ._report_render import render_csv, render_json, render_table

    config = _load(config_path, unread=OFFLINE_UNREAD)
    path = _store_file(config, store, state_dir)
    try:
        prices = PriceTable.default().with_overrides(config.pricing.models)
        data, stacked = report_from_store(
            path, parse_period(period), by, now=time.time(), prices=prices, top_n=top, chart=chart
        )
    except ReportError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    if fmt == "json":
        sys.stdout.buffer.write(render_json(data))
    elif fmt == "csv":
        sys.stdout.write(render_csv(data))
    else:
        render_table(data, _stdout_console())
    if chart:
        note = "" if stacked else " (no [team, model] rollups: bars not stacked by model)"
        err.print(f"chart written to {chart}{note}", markup=False)


@main.command()
@click.option(
    "--period",
    required=True,
    help="A month (2026-10), an ISO week (2026-W41) or a day (2026-10-05), UTC.",
)
@click.option(
    "--by",
    type=click.Choice(["team", "feature", "model", "customer"]),
    help="Rows of the summary (default: digest.by).",
)
@click.option("--channel", help="Slack channel (default: digest.channel, else slack.channel).")
@store_options
@click.option("--force", is_flag=True, help="Post even if this digest is already in the channel.")
@config_option
def digest(
    period: str,
    by: str | None,
    channel: str | None,
    store: str | None,
    state_dir: str,
    force: bool,
    config_path: str | None,
) -> None:
    """Post a period's showback to Slack: summary blocks, and the chart in its thread.

    Uses slack.token / slack.base_url from the config. A digest already posted for the
    same period and grouping (found in the channel's recent history) is not posted again
    unless --force; one posted while the period ran does not count once it has ended.
    `digest.schedule: weekly|monthly` in the config has the worker's store stage send
    each one on its own, once the store holds the whole period. The Slack channel ids it
    learns are kept in <state-dir>/digest/.

    \b
    Example: spendbrake digest --period 2026-10 --channel '#finops' --config spendbrake.yaml
    """
    import tempfile
    from pathlib import Path

    from spendbrake.schemas import PriceTable

    from ._digest import (
        DigestError,
        channel_ids_file,
        load_channel_ids,
        save_channel_ids,
        send_digest,
    )
    from ._report import ReportError, parse_period, report_from_store

    try:  # the command line first, then the config: a typo is named before a setting
        chosen = parse_period(period)
    except ReportError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    config = _load(config_path)
    if config.slack.token is None:
        err.print("error: slack.token is not set in the config (or its ${VAR} is empty)")
        sys.exit(1)
    path = _store_file(config, store, state_dir)
    # The chart is posted from a file; gone with the command.
    with tempfile.TemporaryDirectory(prefix="spendbrake-digest-") as tmp:
        chart = Path(tmp) / f"spend-{period}.png"
        try:
            prices = PriceTable.default().with_overrides(config.pricing.models)
            now = time.time()
            data, _ = report_from_store(
                path, chosen, by or config.digest.by, now=now, prices=prices, chart=chart
            )
            # A digest of a period is never posted before the period starts; once it has ended,
            # one posted while it ran held part of it and does not stand for the whole.
            since = None if force else float(chosen.end if now >= chosen.end else chosen.start)
            # Channel ids learned by earlier digests: a re-run can look for its own post.
            known = channel_ids_file(state_dir)
            ids = load_channel_ids(known)
            try:
                result = asyncio.run(
                    send_digest(
                        config.slack,
                        data,
                        chart,
                        channel=channel or config.digest.channel,
                        since=since,
                        channel_ids=ids,
                    )
                )
            finally:
                save_channel_ids(known, ids)
        except (ReportError, DigestError) as exc:
            err.print(f"error: {exc}", markup=False)
            sys.exit(1)
    where = channel or config.digest.channel or config.slack.channel
    if result.posted:
        err.print(f"digest {chosen.label} posted to {where} (ts {result.ts}), chart in its thread")
    else:
        err.print(
            f"digest {chosen.label} was already in {where} (ts {result.ts}); --force posts it again"
        )


@main.command()
@click.argument("config_file", type=click.Path(), required=False)
@click.option(
    "--config",
    "config_option",
    type=click.Path(),
    help="The same file, as every other command names it (or the argument). "
    "Env: SPENDBRAKE_CONFIG, when neither is given.",
)
def validate(config_file: str | None, config_option: str | None) -> None:
    """Check an operator config file; print every problem with file:line:column and path.

    Checks it as the worker loads it: ${VAR} references must be set, and SPENDBRAKE_BOOTSTRAP
    and SPENDBRAKE_KAFKA_* override the kafka section. Exit status: 0 valid, 1 problems
    found or the file unreadable, 2 a usage error.
    """
    from ._config_loader import ConfigErrors, load_config

    if config_file is not None and config_option is not None:
        raise click.UsageError(
            "name the config file once: `validate FILE` or `validate --config FILE`"
        )
    # The argument or the option first: an environment's default does not clash with them.
    config_file = config_file or config_option or os.environ.get("SPENDBRAKE_CONFIG") or None
    if config_file is None:
        raise click.UsageError(
            "no config file given: `validate FILE`, `validate --config FILE`, or "
            "SPENDBRAKE_CONFIG in the environment"
        )
    try:
        config = load_config(config_file)
    except ConfigErrors as exc:
        for item in exc.errors:
            click.echo(str(item), err=True)
        click.echo(f"{len(exc.errors)} problem(s) in {config_file}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        if exc.location not in (None, config_file):  # at a line: YAML syntax, nesting...
            click.echo(f"1 problem(s) in {config_file}", err=True)
        sys.exit(1)
    if config == load_config(None):
        # An empty or commented-out file is valid, and runs with no budget or policy of its
        # own: worth a word before it is deployed by mistake for the real one.
        from spendbrake.schemas import KAFKA_ENV

        # Not "the default" where the environment overrides what the file set.
        given = [var for var in KAFKA_ENV if os.environ.get(var, "").strip()]
        what = (
            f" beyond the defaults and {', '.join(given)} in the environment"
            if given
            else ": every setting is the default"
        )
        click.echo(f"{config_file}: ok, but it sets nothing{what}")
    else:
        click.echo(f"{config_file}: ok")


@main.group("config")
def config_group() -> None:
    """Operator config helpers (see also: spendbrake validate)."""


@config_group.command("schema")
@click.option("-o", "--output", type=OutputFile(), help="Write to a file.")
def config_schema(output: str | None) -> None:
    """Print the config file's JSON Schema, for editor completion and checks.

    VS Code (YAML extension): add `# yaml-language-server: $schema=spendbrake.schema.json`
    as the first line of the config.
    """
    import orjson

    from spendbrake.detectors import available

    schema = Config.model_json_schema(mode="validation")
    # The model takes any name (the detectors package registers them, and schemas may not
    # import it); the editor should offer the registered ones and flag a typo.
    schema["$defs"]["DetectorConfig"]["properties"]["kind"]["enum"] = available()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "SpendBrake operator config"
    text = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    if output:
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            err.print(f"error: cannot write {output}: {exc.strerror or exc}", markup=False)
            sys.exit(1)
        err.print(f"wrote {output}")
    else:
        click.echo(text)


@main.command()
@click.option(
    "--duration",
    type=Duration(),
    default="20s",
    show_default=True,
    help="How long the live part (the last 4 h) runs.",
)
@click.option(
    "--rate",
    type=Number(min=0),
    default=0.05,
    show_default=True,
    help="Simulated calls per second (weekly mean); three weeks of history at this rate.",
)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--slack-token",
    help="Post to a real Slack workspace with this bot token (scopes chat:write, "
    "channels:history or groups:history for a private channel, files:write) instead of the "
    "fake Slack.",
)
@click.option(
    "--slack-channel", default="#ai-spend", show_default=True, help="Channel for --slack-token."
)
def demo(
    duration: float, rate: float, seed: int, slack_token: str | None, slack_channel: str
) -> None:
    """Run SpendBrake on an embedded broker with simulated traffic and a live view.

    Starts the embedded broker, a fake Slack and a fake LiteLLM gateway, and the worker
    stages configured by spendbrake/demo.yaml; publishes three weeks of history, then
    plays the last four hours live: a batch job loops (paused at the gateway) and the
    critical support bot surges (alerted, never paused). Needs no Kafka install and no
    Slack account.
    """
    from ._demo import run_demo

    try:
        # Off a terminal (a CI log) rich assumes 80 columns and its live view cut the
        # incidents' reasons and the table's title there: as wide as they need.
        console = err if err.is_terminal else Console(stderr=True, highlight=False, width=240)
        code = run_demo(duration, rate, seed, console, slack_token, slack_channel)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM: all stopped by now
        err.print("demo interrupted")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
