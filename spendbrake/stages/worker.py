"""The stages of one process, run together: ``spendbrake worker``, ``spendbrake demo``, and
the tests and benchmarks that run stages in-process all start them here.

``Worker`` decides what runs for a set of stage names (the store brings the digest
schedule along), serves every stage's Prometheus metrics on one port, and runs them on one
event loop. One of them failing (state it cannot read) stops the others, each with its
final checkpoint, and the failure is raised once all have stopped. Given the config file,
it applies changes to it to every stage live (``spendbrake._reload``). With ``signals``,
SIGINT and SIGTERM stop it, SIGHUP looks at the config file at once, and SIGUSR1 prints
every task's await chain (what is a stuck worker waiting on?).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spendbrake.schemas import Config, did_you_mean

from .metrics import OffsetMetrics
from .progress import Progress, registries_of
from .stage import Stage, WorkerSettings

if TYPE_CHECKING:
    from spendbrake.schemas import RollupRecord

    from .act import ActionStage
    from .detect import DetectStage
    from .ingest import IngestStage
    from .store import StoreStage

log = logging.getLogger(__name__)

#: Every stage, in the order a record goes through them.
STAGES = ("ingest", "detect", "act", "store")


def parse_stages(text: str) -> list[str]:
    """``--stages``: a comma-separated subset of ``STAGES``; ``ValueError`` otherwise."""
    chosen = {name.strip() for name in text.split(",") if name.strip()}
    if not chosen or chosen - set(STAGES):
        hint = "".join(did_you_mean(name, STAGES) for name in sorted(chosen - set(STAGES))[:1])
        raise ValueError(f"{text!r}{hint}: use a comma-separated subset of {','.join(STAGES)}")
    return [name for name in STAGES if name in chosen]


class Worker:
    """The chosen stages, built (no I/O) and ready to ``run`` together.

    Parameters
    ----------
    stages
        Names from ``STAGES``; each stage's module (and its libraries: slack-sdk and
        aiohttp for ``act``, DuckDB for ``store``) is imported only if it is chosen.
    on_records
        Called with the rollup records of each ingest flush (the demo's live view).
    config_path
        The operator YAML the config came from: changes to it are applied live, checked
        every ``reload_s`` seconds (0: only on SIGHUP).
    overrides
        What the command line changed in the loaded config (``--bootstrap``, ``--group``),
        applied to every reloaded one too.
    """

    def __init__(
        self,
        config: Config,
        settings: WorkerSettings,
        stages: Iterable[str],
        *,
        on_records: Callable[[list[RollupRecord]], None] | None = None,
        config_path: str | Path | None = None,
        reload_s: float = 1.0,
        overrides: Callable[[Config], Config] | None = None,
    ) -> None:
        chosen = parse_stages(",".join(stages))
        self.config = config
        self.settings = settings
        self.stages: dict[str, Stage] = {}
        #: What runs beside the stages and stops with them (the digest schedule).
        self.others: list[Any] = []
        if "ingest" in chosen:
            from .ingest import IngestStage

            self.stages["ingest"] = IngestStage(config, settings, on_records=on_records)
        if "detect" in chosen:
            from .detect import DetectStage

            self.stages["detect"] = DetectStage(config, settings)
        if "act" in chosen:
            from .act import ActionStage

            self.stages["act"] = ActionStage(config, settings)
        if "store" in chosen:
            from spendbrake._digest import DigestScheduler  # Slack and DuckDB: only with the store

            from .store import StoreStage

            store = StoreStage(config, settings)
            self.stages["store"] = store
            self.others.append(
                DigestScheduler(
                    config,
                    store.path,
                    settings.state_dir,
                    store.file_lock,
                    complete=store.complete_until,
                    lateness_s=settings.lateness_s,
                )
            )
        # One counter of out-of-range offsets for the process: served once, for every stage.
        self.offset_metrics = OffsetMetrics()
        for stage in self.stages.values():
            stage.offset_metrics = self.offset_metrics
        self.reloader: Any = None
        if config_path is not None:
            from spendbrake._reload import ConfigReloader

            self.reloader = ConfigReloader(
                config_path, config, self.running, reload_s, overrides or (lambda c: c)
            )
        self.stopping = asyncio.Event()
        self.progress = Progress(registries_of(self.stages), settings.progress_s)
        #: The first failure of a stage: raised by ``run`` once every stage has stopped.
        self.failure: BaseException | None = None
        self.config_path = config_path

    # Typed handles for the callers that look inside a stage (the demo's view, tests).
    @property
    def ingest(self) -> IngestStage:
        return self.stages["ingest"]  # type: ignore[return-value]

    @property
    def detect(self) -> DetectStage:
        return self.stages["detect"]  # type: ignore[return-value]

    @property
    def act(self) -> ActionStage:
        return self.stages["act"]  # type: ignore[return-value]

    @property
    def store(self) -> StoreStage:
        return self.stages["store"]  # type: ignore[return-value]

    @property
    def running(self) -> list[Any]:
        """Everything that runs and stops together, and takes a reloaded config."""
        return [*self.stages.values(), *self.others]

    def stop(self) -> None:
        """Ask every stage to stop (each makes its final checkpoint)."""
        self.stopping.set()
        for part in self.running:
            part.stop()

    async def run(self, *, signals: bool = False, create_topics: bool = False) -> None:
        """Run until stopped, or until a stage fails (raised once all have stopped).

        ``signals``: handle SIGINT, SIGTERM, SIGHUP and SIGUSR1 (a process of its own, not
        a test). ``create_topics``: create the config's topics first if they are missing.
        """
        server = self._serve_metrics()
        log.info("%s", self.describe(None if server is None else server.server_port))
        loop = asyncio.get_running_loop()
        handled = self._handle_signals(loop) if signals else []
        try:
            if create_topics:
                from spendbrake._broker import ensure_topics

                kafka = self.config.kafka
                await ensure_topics(
                    kafka.bootstrap_servers,
                    kafka.topics.names(),
                    kafka.partitions,
                    kafka.replication_factor,
                    security=kafka.security_args(),
                )
            tasks = [self._guarded(part) for part in self.running]
            tasks.append(self.progress.run(self.stopping))
            if self.reloader is not None:
                tasks.append(self.reloader.run(self.stopping))
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            if server is not None:
                await asyncio.to_thread(server.shutdown)
                server.server_close()
        if self.failure is not None:
            raise self.failure

    async def _guarded(self, part: Any) -> None:
        try:
            await part.run()
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc
            self.stop()  # one failing stops the others cleanly (final checkpoints)
            raise

    def describe(self, metrics_port: int | None) -> str:
        """The line a worker logs as it starts: what it runs, on what, where its state is.

        Without it, a process's log began with aiokafka's lines, and which of several
        processes on one state directory ran which stages was told by nothing.
        """
        kafka, settings = self.config.kafka, self.settings
        where = "off" if metrics_port is None else f"{settings.metrics_host}:{metrics_port}"
        config = "built-in defaults" if self.config_path is None else str(self.config_path)
        return (
            f"worker pid {os.getpid()}: stages {','.join(self.stages)}; Kafka "
            f"{kafka.bootstrap_servers}, group {kafka.group_id}; state in {settings.state_dir}; "
            f"config {config}; metrics {where}"
        )

    def _serve_metrics(self) -> Any:
        port = self.settings.metrics_port
        if port is None:
            return None
        from .metrics import serve

        # The stages' own registries, and the one offsets registry they share.
        registries = [*registries_of(self.stages).values(), self.offset_metrics.registry]
        try:
            return serve(registries, port, self.settings.metrics_host)
        except OSError as exc:  # metrics are not worth failing the stages over
            log.warning("cannot serve metrics on port %d: %s", port, exc)
            return None

    def _handle_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        handled = [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1]
        if self.reloader is not None:
            loop.add_signal_handler(signal.SIGHUP, self.reloader.request)
            handled.append(signal.SIGHUP)
        return handled


async def run_worker(
    config: Config,
    settings: WorkerSettings,
    stages: Iterable[str],
    *,
    signals: bool = False,
    create_topics: bool = False,
    **options: Any,
) -> None:
    """``Worker(config, settings, stages, **options).run(...)``: for a caller that needs no
    handle on the stages while they run (``spendbrake worker``)."""
    await Worker(config, settings, stages, **options).run(
        signals=signals, create_topics=create_topics
    )


def dump_tasks() -> None:
    """Print every asyncio task's stack to stderr (SIGUSR1)."""
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                print(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}",
                    file=sys.stderr,
                )
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    sys.stderr.flush()


def tune_gc() -> None:
    """Collect garbage less often, for a process whose main job is the worker.

    The hot path allocates a few long-lived containers per event (trace
    partials, their dicts), so the default thresholds run a young collection
    every few hundred events and now and then traverse the whole heap, open
    windows and dedupe sets included: measured here at about a fifth of the
    processing time. Our state holds no reference cycles; objects alive at
    start are frozen out of collections, and young ones are collected less
    often. Called by ``spendbrake worker`` and the benchmark, not by ``Worker``,
    since it changes the whole process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
