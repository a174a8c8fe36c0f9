"""Producer SDK: publish one usage event per LLM call.

>>> from spendbrake.sdk import SpendProducer            # doctest: +SKIP
>>> producer = SpendProducer("127.0.0.1:9092")          # doctest: +SKIP
>>> producer.emit({"event_id": "...", "ts": 1795428000, ...})  # doctest: +SKIP
"""

from ._producer import ProducerStats, SpendProducer
from ._redact import redact_api_key

__all__ = ["ProducerStats", "SpendProducer", "redact_api_key"]
