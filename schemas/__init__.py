"""Data shared by every SpendBrake package: the usage event contract v1, the
operator config model, prices, and the error tree."""

from ._config import (
    DEFAULT_DIMENSIONS,
    SCOPE_FIELDS,
    BudgetConfig,
    Config,
    DetectorConfig,
    GatewayConfig,
    KafkaConfig,
    PolicyConfig,
    PricingConfig,
    SlackConfig,
    TopicsConfig,
)
from ._errors import ConfigError, InvalidEvent, SpendBrakeError
from ._event import (
    MAX_EVENT_BYTES,
    WORKLOADS,
    UsageEvent,
    decode_event,
    format_ts,
    parse_ts,
    validate_event,
)

__all__ = [
    "DEFAULT_DIMENSIONS",
    "MAX_EVENT_BYTES",
    "SCOPE_FIELDS",
    "WORKLOADS",
    "BudgetConfig",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "GatewayConfig",
    "InvalidEvent",
    "KafkaConfig",
    "PolicyConfig",
    "PricingConfig",
    "SlackConfig",
    "SpendBrakeError",
    "TopicsConfig",
    "UsageEvent",
    "decode_event",
    "format_ts",
    "parse_ts",
    "validate_event",
]
