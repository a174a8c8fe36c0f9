"""A LiteLLM ``CustomLogger`` that publishes one v1 usage event per call.

In a LiteLLM proxy config::

    litellm_settings:
      callbacks: spendbrake.sdk.litellm_logger.proxy_handler_instance

or in code: ``litellm.callbacks = [SpendBrakeLogger()]``. The event is built
from LiteLLM's ``standard_logging_object`` (its own ``response_cost``), so the
price is the one the gateway computed. Environment: ``SPENDBRAKE_BOOTSTRAP``,
``SPENDBRAKE_TOPIC`` (default ``spend.events``) and ``SPENDBRAKE_DEFAULT_TEAM``
(team for keys that have none; default ``unassigned``).

Nothing here may break the LLM call: every failure is logged and counted.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from spendbrake.schemas import ConfigError, SpendBrakeError, from_litellm

from ._producer import SpendProducer, sent_bytes

log = logging.getLogger(__name__)


class SpendBrakeLogger(CustomLogger):
    """Turn LiteLLM successes (and failures that cost money) into usage events.

    ``producer`` defaults to a ``SpendProducer`` created on the first event, so
    importing this module (as the proxy does) starts no thread.
    """

    def __init__(
        self,
        producer: SpendProducer | None = None,
        *,
        default_team: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._producer = producer
        self._lock = threading.Lock()
        self.default_team = default_team or os.environ.get("SPENDBRAKE_DEFAULT_TEAM", "unassigned")
        self.events_emitted = 0
        self.events_failed = 0
        #: The producer could not be made (a ``ConfigError``), said once.
        self._unstartable = False

    @property
    def producer(self) -> SpendProducer:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = SpendProducer(
                        topic=os.environ.get("SPENDBRAKE_TOPIC", "spend.events"),
                        client_id="spendbrake-litellm",
                    )
        return self._producer

    def _emit(self, kwargs: dict[str, Any], failure: bool) -> None:
        try:
            payload = kwargs.get("standard_logging_object")
            if not payload:
                log.debug("LiteLLM call without standard_logging_object; nothing to emit")
                return
            if failure and not payload.get("response_cost"):
                return  # a failed call that cost nothing is not spend
            # Tags are cut to fit the record as emit() sends it, after redaction.
            event = from_litellm(payload, default_team=self.default_team, sent_bytes=sent_bytes)
            self.producer.emit(event)
            self.events_emitted += 1
        except ConfigError as exc:  # the producer cannot start: say so once, not per call
            self.events_failed += 1
            report = log.debug if self._unstartable else log.error
            self._unstartable = True
            report("SpendBrake sends no usage events: its producer cannot start: %s", exc)
        except SpendBrakeError as exc:
            self.events_failed += 1
            log.warning("SpendBrake could not build a usage event from LiteLLM: %s", exc)
        except Exception:  # never let accounting break the LLM call
            self.events_failed += 1
            log.exception("SpendBrake logger failed")

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._emit(kwargs, failure=False)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._emit(kwargs, failure=True)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._emit(kwargs, failure=False)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._emit(kwargs, failure=True)


#: What a LiteLLM proxy config names under ``callbacks``.
proxy_handler_instance = SpendBrakeLogger()
