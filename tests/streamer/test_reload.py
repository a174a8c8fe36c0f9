"""Hot reload on the embedded broker: a running worker takes a budget change without
forgetting the spend it has counted, and rejects a broken file while the old config runs."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake.fakes.slack import FakeSlack
from spendbrake.schemas import Config
from tests.kafka_helpers import read_topic
from tests.streamer.kafka_io import publish_raw
from tests.streamer.test_worker import start_worker, stop

T0 = 1_791_158_400 + 9 * 3600  # 2026-10-05T09:00:00Z
SPENT = 90.0  # dollars of team search before the reload


class Recorder:
    """A stage that takes every config handed to it."""

    def __init__(self) -> None:
        self.configs: list[Config] = []

    def reconfigure(self, config: Config) -> list[str]:
        self.configs.append(config)
        return []


def _event(n: int, ts: float, team: str, cost: float) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"reload-{n}",
            "ts": ts,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 100,
            "output_tokens": 10,
            "cost_usd": cost,
            "team": team,
            "api_key": f"{team}-key",
            "workload": "batch",
        }
    )


def _config(
    topics: dict[str, str], slack: FakeSlack, search_usd: float, canary: str, ops: bool = False
) -> str:
    names = "".join(f"    {k}: {v}\n" for k, v in topics.items())
    # A budget on team ops: its minutes are rolled up from the reload that adds it.
    ops_budget = "  - {name: ops-daily, scope: {team: ops}, amount_usd: 1000, period: day}\n"
    return (
        f"kafka:\n  group_id: reload-test\n  topics:\n{names}"
        f"slack:\n  token: xoxb-ops\n  base_url: {slack.base_url}\n  channel: '#ops'\n"
        "detectors: []\n"
        "budgets:\n"
        # Fires once the detect stage has read every dollar of the first batch.
        f"  - {{name: canary, scope: {{team: search}}, amount_usd: {canary}, period: day,"
        " alert_at: [1.0], hard_stop_at: null}\n"
        f"  - name: search-daily\n    scope: {{team: search}}\n    amount_usd: {search_usd}\n"
        "    period: day\n    alert_at: [0.8, 1.0]\n    hard_stop_at: null\n"
        + (ops_budget if ops else "")
    )


def _budget_alerts(broker: EmbeddedBroker, topic: str) -> list[dict]:
    records = asyncio.run(read_topic(broker.bootstrap_servers, topic, expect=10**9, timeout_s=2.0))
    return [orjson.loads(v) for _, _, v in records if v is not None]


def _wait_alert(
    broker: EmbeddedBroker, topic: str, match: Callable[[dict], bool], log: Path, timeout_s: float
) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [a for a in _budget_alerts(broker, topic) if match(a)]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no such alert; worker log:\n{log.read_text()[-3000:]}")


def test_reload_applies_a_budget_change_and_rejects_a_broken_file(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = {"events": make_topic("events", 2), "rollups": make_topic("rollups", 2)}
    topics["alerts"] = make_topic("alerts", 1)
    for name in ("dlq", "actions", "traces"):
        topics[name] = f"{topics['events']}-{name}"
    config, state, log = tmp_path / "spendbrake.yaml", tmp_path / "state", tmp_path / "worker.log"
    first = [_event(i, T0 + 60 * i, "search", SPENT / 30) for i in range(30)]
    with FakeSlack(token="xoxb-ops", channel="ops") as slack:
        config.write_text(_config(topics, slack, search_usd=1000.0, canary=str(SPENT)))
        asyncio.run(publish_raw(broker.bootstrap_servers, topics["events"], first))
        worker = start_worker(broker, config, state, log, stages="ingest,detect")
        try:
            canary = _wait_alert(
                broker, topics["alerts"], lambda a: a["budget"] == "canary", log, 90
            )
            assert abs(canary["observed_usd"] - SPENT) < 1e-6, canary
            alerts = _budget_alerts(broker, topics["alerts"])
            assert not [a for a in alerts if a["budget"] == "search-daily"], alerts

            # 1. A valid change: $90 of $100 crosses 80% at once, from the spend already
            # counted (no new search event follows; one event of another team moves time).
            config.write_text(_config(topics, slack, search_usd=100.0, canary=str(SPENT), ops=True))
            time.sleep(3.0)
            asyncio.run(
                publish_raw(
                    broker.bootstrap_servers, topics["events"], [_event(100, T0 + 1900, "ops", 0.5)]
                )
            )
            crossed = _wait_alert(
                broker,
                topics["alerts"],
                lambda a: a["budget"] == "search-daily" and a["threshold"] == 0.8,
                log,
                60,
            )
            assert abs(crossed["observed_usd"] - SPENT) < 1e-6, crossed

            # 2. A broken file: rejected, posted once to the operators' channel, old config runs.
            broken = _config(topics, slack, search_usd=-5, canary=str(SPENT), ops=True).replace(
                "hard_stop_at: null}", "hard_stop: null}"
            )
            config.write_text(broken)
            assert slack.wait_for(lambda: len(slack.messages) >= 1, 30), log.read_text()[-3000:]
            time.sleep(2.0)
            config.write_text(broken)  # touched again, same problems: not posted again
            worker.send_signal(signal.SIGHUP)
            time.sleep(3.0)
            assert len(slack.messages) == 1, slack.messages
            text = slack.messages[0]["text"]
            assert f"{config}:19:17: budgets[1].amount_usd: must be greater than 0" in text, text
            assert "budgets[0].hard_stop: unknown key" in text, text
            # $15 more: $105 of the $100 still in force crosses 100%.
            more = [_event(200 + i, T0 + 2000 + 60 * i, "search", 1.5) for i in range(10)]
            asyncio.run(publish_raw(broker.bootstrap_servers, topics["events"], more))
            full = _wait_alert(
                broker,
                topics["alerts"],
                lambda a: a["budget"] == "search-daily" and a["threshold"] == 1.0,
                log,
                60,
            )
            assert abs(full["observed_usd"] - (SPENT + 15.0)) < 1e-6, full
        finally:
            stop(worker)
    text = log.read_text()
    assert "config reloaded" in text and "rejected; the running config stays" in text, text[-3000:]
    alerts = _budget_alerts(broker, topics["alerts"])
    kinds = [(a["budget"], a["threshold"]) for a in alerts if a["kind"] == "budget"]
    assert sorted(kinds) == [("canary", 1.0), ("search-daily", 0.8), ("search-daily", 1.0)], kinds
    # Minutes of budgets' scopes only (``minute_windows: budgets``, the default), ops' since
    # the reload that budgeted it; hours of every series.
    rollups = asyncio.run(
        read_topic(broker.bootstrap_servers, topics["rollups"], expect=10**9, timeout_s=2.0)
    )
    windows: dict[int, set[tuple]] = {}
    for _, _, value in rollups:
        record = orjson.loads(value)
        if "window_s" in record:
            series = tuple(sorted(record["series"].items()))
            windows.setdefault(record["window_s"], set()).add(series)
    assert windows[60] == {(("team", "search"),), (("team", "ops"),)}, windows[60]
    assert {(("team", "ops"),), (("api_key", "ops-key"),), ()} <= windows[3600], windows[3600]


async def test_stages_switch_together_and_a_refusal_puts_them_back(tmp_path: Path) -> None:
    from spendbrake._config_loader import load_config
    from spendbrake.stages import STAGES, Worker, WorkerSettings

    path = tmp_path / "spendbrake.yaml"
    path.write_text("gateway: {dry_run: true}\n")
    config = load_config(path)
    # The worker hands its reloader every stage it runs.
    worker = Worker(config, WorkerSettings(state_dir=tmp_path / "state"), STAGES, config_path=path)
    ingest, detect, act, store = worker.ingest, worker.detect, worker.act, worker.store

    class Refuses:
        refuse = False

        def reconfigure(self, config: Config) -> list[str]:
            if self.refuse:
                self.refuse = False
                raise ValueError("gateway unreachable")
            return []

    refuses = Refuses()
    reloader = worker.reloader
    reloader.stages.append(refuses)
    dry_run_gateway = act.gateway
    path.write_text(
        "gateway: {dry_run: false, master_key: sk-x}\n"
        "pricing:\n  models:\n    - {provider: acme, model: m1, prices:"
        " [{effective_from: 2026-01-01, input: 1.0, output: 2.0}]}\n"
        "dimensions: [[team]]\n"
        "store: {path: elsewhere.duckdb}\n"
    )
    result = reloader.check()
    assert result.status == "applied", result
    assert result.lines == (
        "dimensions: the ingest rolls up by the new sets after a restart",
        "store.path: applied at the next restart",
    )
    assert store.config.store.path is None
    assert act.gateway is not dry_run_gateway and not act.outbox.dry_run
    assert detect.config.dimensions == [["team"]] and ingest.config.dimensions != [["team"]]
    assert ingest.prices.lookup("acme", "m1", T0) is not None

    path.write_text("gateway: {dry_run: true}\n")
    refuses.refuse = True
    result = reloader.check()
    assert result.status == "rejected" and "gateway unreachable" in result.lines[0]
    # Every stage is back on the config in force: no mix of old and new.
    assert act.config is reloader.config
    assert not act.outbox.dry_run
    assert detect.config is reloader.config and detect.config.dimensions == [["team"]]
    assert reloader.check().status == "unchanged"  # the same refused text is not retried


def test_an_emptied_file_never_reloads_as_the_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An editor that truncates, then writes: the empty file between the two is not a
    config of all defaults (no budgets, no policies) to apply."""
    from spendbrake._config_loader import load_config
    from spendbrake._reload import ConfigReloader

    caplog.set_level(logging.INFO, logger="spendbrake")
    path = tmp_path / "spendbrake.yaml"
    path.write_text("budgets: [{name: b, scope: {team: t}, amount_usd: 5}]\n")
    config = load_config(path)
    stage = Recorder()
    reloader = ConfigReloader(path, config, [stage])
    # A file of comments alone (or of an empty document) was applied: every budget
    # removed, and restored, each of them fired its thresholds again.
    for text in ("", "  \n", "# only a comment\n", "---\n", "{}\n"):
        path.write_text(text)
        assert reloader.check().status == "unchanged", text
    assert reloader.config is config and not stage.configs
    assert "sets nothing (empty, or comments alone); the running config stays" in caplog.text
    path.write_text("budgets: [{name: b, scope: {team: t}, amount_usd: 7}]\n")
    assert reloader.check().status == "applied"
    assert [b.amount_usd for b in stage.configs[-1].budgets] == [7]
    # The log says what changed, not only that something did.
    assert "(generation 1): budgets changed" in caplog.text, caplog.text
    # Saved in another encoding: refused (named), and the next good edit still applies.
    path.write_bytes(b"budgets: [{name: b, scope: {team: t\xe9}, amount_usd: 8}]\n")
    assert reloader.check().status != "applied"
    path.write_text("budgets: [{name: b, scope: {team: t}, amount_usd: 9}]\n")
    assert reloader.check().status == "applied"
    assert [b.amount_usd for b in stage.configs[-1].budgets] == [9]


async def test_the_rejection_note_in_slack_escapes_keys_and_hides_env_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected file's problems go to Slack as text: a key written as ``<!channel>`` pages
    nobody, and a secret ``${VAR}`` put in a typed field is named, never shown."""
    from spendbrake._config_loader import load_config
    from spendbrake._reload import ConfigReloader

    secret = "sk-litellm-master-" + "9" * 20
    monkeypatch.setenv("LITELLM_MASTER_KEY", secret)
    with FakeSlack(token="xoxb-ops", channel="ops") as slack:
        path = tmp_path / "spendbrake.yaml"
        head = f"slack: {{token: xoxb-ops, base_url: '{slack.base_url}', channel: '#ops'}}\n"
        path.write_text(head)
        reloader = ConfigReloader(path, load_config(path), [], interval_s=0.05)
        path.write_text(
            head + "budgets:\n  - {name: a, amount_usd: '${LITELLM_MASTER_KEY}', '<!channel>': 1}\n"
        )
        stopping = asyncio.Event()
        task = asyncio.ensure_future(reloader.run(stopping))
        assert await asyncio.to_thread(slack.wait_for, lambda: bool(slack.messages), 10)
        stopping.set()
        await task
    text = slack.messages[0]["text"]
    assert "budgets[0].amount_usd" in text and "LITELLM_MASTER_KEY" in text, text
    assert "&lt;!channel&gt;" in text and "<!" not in text, text
    assert secret not in text and "99999" not in text, text
    assert secret not in caplog.text and "LITELLM_MASTER_KEY" in caplog.text


async def test_a_rejection_note_slack_could_not_take_is_posted_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack down when the file was rejected: the note was logged as not posted and never
    tried again. It is tried again while the file stays as it is, and posted once."""
    from spendbrake import _reload
    from spendbrake._config_loader import load_config
    from spendbrake._reload import ConfigReloader

    monkeypatch.setattr(_reload, "_POST_RETRY_S", 0.2)
    with FakeSlack(token="xoxb-ops", channel="ops") as slack:
        path = tmp_path / "spendbrake.yaml"
        head = (
            f"slack: {{token: xoxb-ops, base_url: '{slack.base_url}', channel: '#ops', "
            "timeout_s: 1}\n"
        )
        path.write_text(head)
        reloader = ConfigReloader(path, load_config(path), [], interval_s=0.05)
        slack.down()
        path.write_text(head + "bogus_key: 1\n")
        stopping = asyncio.Event()
        task = asyncio.ensure_future(reloader.run(stopping))
        await asyncio.sleep(1.5)
        assert not slack.messages
        slack.up()
        assert await asyncio.to_thread(slack.wait_for, lambda: bool(slack.messages), 10)
        await asyncio.sleep(0.6)  # a few more retry intervals: nothing more is posted
        stopping.set()
        await task
    assert len(slack.messages) == 1 and "bogus_key" in slack.messages[0]["text"]


def test_the_bytes_compared_are_the_bytes_applied(tmp_path: Path) -> None:
    """The file changes between two reads (a tool rewriting it in place): the reload read it
    once for the comparison and again to parse it, so a cut-off file (its last budget
    missing, still valid YAML) or an emptied one (all defaults: every budget dropped) was
    applied under the complete text's digest, and the complete file never was, not even
    on SIGHUP. A pipe stands in for the file: it serves the edited text to its first
    reader, and a cut-off copy (or nothing) to a later one."""
    import os
    import threading

    from spendbrake._config_loader import load_config
    from spendbrake._reload import ConfigReloader

    path = tmp_path / "spendbrake.yaml"
    text = "budgets:\n  - {name: a, amount_usd: 5}\n  - {name: b, amount_usd: 6}\n"
    path.write_text(text)

    stage = Recorder()
    reloader = ConfigReloader(path, load_config(path), [stage])
    edited = text.replace("amount_usd: 6", "amount_usd: 7")
    cut = edited[: edited.index("  - {name: b")]
    path.unlink()
    os.mkfifo(path)
    done = threading.Event()

    def writer() -> int | None:
        """A write end of the pipe while a reader has it open, else None."""
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    def serve_next(served: str) -> None:
        while not done.is_set():
            if (fd := writer()) is not None:
                os.write(fd, served.encode())
                os.close(fd)
                return
            done.wait(0.01)

    def serve() -> None:
        serve_next(edited)
        while not done.is_set() and (fd := writer()) is not None:
            os.close(fd)  # the first reader still has it open: wait until it is done
            done.wait(0.01)
        serve_next(cut)

    server = threading.Thread(target=serve)
    server.start()
    try:
        result = reloader.check()
    finally:
        done.set()
        server.join()
    assert result.status == "applied", result
    assert [(b.name, b.amount_usd) for b in stage.configs[-1].budgets] == [("a", 5), ("b", 7)]


@pytest.mark.parametrize("with_store", [True, False])
def test_a_budget_added_by_a_reload_counts_the_period_before_it(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path, with_store: bool
) -> None:
    """A budget added mid-period (or scoped anew) counted only the spend read after the
    reload: a team $90 into its day got a $100 budget whose thresholds and hard stop came
    $90 late. With the store stage running, its spend so far comes from the report store's
    hourly rollups (the topic's own parts, exact); without a store, the log says it counts
    from the reload."""
    topics = {"events": make_topic("events", 2), "rollups": make_topic("rollups", 2)}
    topics["alerts"] = make_topic("alerts", 1)
    for name in ("dlq", "actions", "traces"):
        topics[name] = f"{topics['events']}-{name}"
    config, state, log = tmp_path / "spendbrake.yaml", tmp_path / "state", tmp_path / "worker.log"
    # $90 in the day's 06:00 hour, then calls of team ops at 09:00 on both partitions: the
    # 06:00 hour is closed (its records final) before the reload. An hour still open then
    # is re-sent whole as it grows, so only closed hours were ever missed.
    first = [_event(i, T0 - 3 * 3600 + 60 * i, "search", SPENT / 30) for i in range(30)]
    first += [_event(50 + i, T0 + 60 * i, "ops", 0.01) for i in range(20)]
    names = "".join(f"    {k}: {v}\n" for k, v in topics.items())
    base = (
        f"kafka:\n  group_id: seed-test\n  topics:\n{names}detectors: []\nbudgets:\n"
        f"  - {{name: canary, scope: {{team: search}}, amount_usd: {SPENT}, period: day,"
        " alert_at: [1.0], hard_stop_at: null}\n"
    )
    added = (
        "  - {name: search-new, scope: {team: search}, amount_usd: 100, period: day,"
        " alert_at: [0.5, 0.8, 1.0], hard_stop_at: null}\n"
    )
    stages = "ingest,detect,store" if with_store else "ingest,detect"
    config.write_text(base)
    asyncio.run(publish_raw(broker.bootstrap_servers, topics["events"], first))
    worker = start_worker(broker, config, state, log, stages=stages)
    try:
        _wait_alert(broker, topics["alerts"], lambda a: a["budget"] == "canary", log, 90)
        time.sleep(2.0)  # the rest of the first batch read
        config.write_text(base + added)
        time.sleep(3.0)
        # One more search call of $1 after the reload, in the 09:00 hour.
        late = [_event(100, T0 + 1900, "search", 1.0)]
        late += [_event(101 + i, T0 + 2000 + i, "ops", 0.01) for i in range(10)]
        asyncio.run(publish_raw(broker.bootstrap_servers, topics["events"], late))
        if with_store:
            crossed = _wait_alert(
                broker,
                topics["alerts"],
                lambda a: a["budget"] == "search-new" and a["threshold"] == 0.8,
                log,
                60,
            )
            assert crossed["observed_usd"] >= SPENT - 1e-6, crossed
        else:
            deadline = time.monotonic() + 60
            while "no report store at" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2.0)
    finally:
        stop(worker)
    text = log.read_text()
    alerts = [a for a in _budget_alerts(broker, topics["alerts"]) if a["budget"] == "search-new"]
    if with_store:
        assert "read from the report store" in text, text[-3000:]
        # 50 % and 80 % once each, at once; 100 % not reached ($91 of $100).
        assert sorted(a["threshold"] for a in alerts) == [0.5, 0.8], alerts
    else:
        assert "budget search-new: no report store at" in text, text[-3000:]
        assert alerts == [], [(a["threshold"], a["observed_usd"], a["reason"]) for a in alerts]


async def test_a_mistake_made_again_after_a_good_config_is_told_again(tmp_path: Path) -> None:
    """``amount_usd: -5`` saved, fixed, then saved again within 30 s: nothing was logged
    (the repeat filter held the line) and nothing posted (the set of problems posted was
    never cleared by the good config between)."""
    from spendbrake._config_loader import load_config
    from spendbrake._logs import RepeatFilter
    from spendbrake._reload import ConfigReloader

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep(logging.ERROR)
    handler.addFilter(RepeatFilter())  # as the worker's logging has it
    logging.getLogger("spendbrake._reload").addHandler(handler)
    try:
        with FakeSlack(token="xoxb-ops", channel="ops") as slack:
            path = tmp_path / "spendbrake.yaml"
            head = f"slack: {{token: xoxb-ops, base_url: '{slack.base_url}', channel: '#ops'}}\n"
            good = head + "budgets: [{name: b, scope: {team: t}, amount_usd: 5}]\n"
            bad = head + "budgets: [{name: b, scope: {team: t}, amount_usd: -5}]\n"
            path.write_text(good)
            reloader = ConfigReloader(path, load_config(path), [], interval_s=0.05)
            stopping = asyncio.Event()
            task = asyncio.ensure_future(reloader.run(stopping))
            for n, text in enumerate((bad, good, bad), start=1):
                path.write_text(text)
                await asyncio.sleep(0.6)  # the file settles, then is read
                if text is bad:
                    posted = n // 2 + 1
                    assert await asyncio.to_thread(
                        slack.wait_for, lambda p=posted: len(slack.messages) >= p, 10
                    ), (n, slack.messages)
            stopping.set()
            await task
    finally:
        logging.getLogger("spendbrake._reload").removeHandler(handler)
    assert len(slack.messages) == 2
    rejected = [line for line in lines if "rejected; the running config stays" in line]
    assert len(rejected) == 2, lines


def test_a_change_waiting_for_a_restart_is_said_once(tmp_path: Path) -> None:
    """Every reload after a ``kafka`` edit said "kafka: applied at the next restart" again,
    until the restart; a stage's own restart notes (``store.path``) did the same."""
    from spendbrake._config_loader import load_config
    from spendbrake._reload import ConfigReloader, ReloadResult

    class Store:
        def reconfigure(self, config: Config) -> list[str]:
            moved = config.store.path is not None
            return ["store.path: applied at the next restart"] if moved else []

    path = tmp_path / "spendbrake.yaml"
    path.write_text("gateway: {dry_run: true}\n")
    reloader = ConfigReloader(path, load_config(path), [Store()], interval_s=0)
    waits = "kafka: {group_id: other}\nstore: {path: elsewhere.duckdb}\n"
    path.write_text(waits + "gateway: {dry_run: true}\n")
    assert reloader.check().lines == (
        "kafka: applied at the next restart",
        "store.path: applied at the next restart",
    )
    path.write_text(waits + "gateway: {dry_run: false, master_key: sk-x}\n")
    assert reloader.check() == ReloadResult("applied")
    # Put back, then changed again: news again.
    path.write_text("gateway: {dry_run: true}\n")
    assert reloader.check() == ReloadResult("applied")
    path.write_text(waits)
    assert len(reloader.check().lines) == 2
