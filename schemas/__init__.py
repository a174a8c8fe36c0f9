"""Data shared by every SpendBrake package: the usage event contract v1, the
operator config model, prices, and the error tree."""

from ._adapters import (
    from_anthropic_usage,
    from_litellm,
    from_openai_usage,
    from_otel_attributes,
)
from ._alert import ALERT_KINDS, Alert, KeyInfo, decode_alert
from ._config import (
    DEFAULT_DIMENSIONS,
    KAFKA_ENV,
    KEY_DIMENSIONS,
    SCOPE_FIELDS,
    BudgetConfig,
    Config,
    DetectorConfig,
    DigestConfig,
    GatewayConfig,
    KafkaConfig,
    LimitsConfig,
    PolicyConfig,
    PricingConfig,
    SlackConfig,
    StoreConfig,
    TopicsConfig,
    kafka_env_overrides,
)
from ._errors import ConfigError, InvalidEvent, SpendBrakeError, StateUnreadable
from ._event import (
    MAX_EVENT_BYTES,
    WORKLOADS,
    UsageEvent,
    decode_event,
    format_ts,
    parse_ts,
    validate_event,
)
from ._keys import LITELLM_MASTER_KEY, KeyClass, KeyRule, KeysConfig
from ._pricing import ModelPrice, PriceEntryModel, PriceTable
from ._snapshot import unpickle_state
from ._text import csv_text, mrkdwn, mrkdwn_code, visible

__all__ = [
    "ALERT_KINDS",
    "DEFAULT_DIMENSIONS",
    "KAFKA_ENV",
    "KEY_DIMENSIONS",
    "LITELLM_MASTER_KEY",
    "MAX_EVENT_BYTES",
    "SCOPE_FIELDS",
    "WORKLOADS",
    "Alert",
    "BudgetConfig",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "DigestConfig",
    "GatewayConfig",
    "InvalidEvent",
    "KafkaConfig",
    "KeyClass",
    "KeyInfo",
    "KeyRule",
    "KeysConfig",
    "LimitsConfig",
    "ModelPrice",
    "PolicyConfig",
    "PriceEntryModel",
    "PriceTable",
    "PricingConfig",
    "SlackConfig",
    "SpendBrakeError",
    "StateUnreadable",
    "StoreConfig",
    "TopicsConfig",
    "UsageEvent",
    "csv_text",
    "decode_alert",
    "decode_event",
    "format_ts",
    "from_anthropic_usage",
    "from_litellm",
    "from_openai_usage",
    "from_otel_attributes",
    "kafka_env_overrides",
    "mrkdwn",
    "mrkdwn_code",
    "parse_ts",
    "unpickle_state",
    "validate_event",
    "visible",
]
