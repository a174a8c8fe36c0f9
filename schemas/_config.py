"""The operator config model: one YAML file, one frozen pydantic model per section.

Loading (``${ENV}`` expansion, file locations in messages) lives in
``spendbrake``; this module only says what a valid config is, so every stage
can be handed just its own section.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping, Sequence
from string import Formatter
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._errors import ConfigError, ValueAt
from ._event import WORKLOADS
from ._keys import KeysConfig
from ._pricing import PriceEntryModel
from ._rollup import ROLLUP_WINDOWS_S
from ._text import did_you_mean

#: Event fields a scope, a match or a rollup dimension may name.
SCOPE_FIELDS = (
    "team",
    "feature",
    "api_key",
    "customer",
    "environment",
    "workload",
    "model",
    "provider",
)

DEFAULT_DIMENSIONS: tuple[tuple[str, ...], ...] = (
    (),
    ("team",),
    ("team", "feature"),
    ("api_key",),
    ("customer",),
    ("model",),
)

#: Always rolled up (beside the configured sets): who owns each api key and how critical it
#: is, so the detector stage can name the keys in a scope and never pause a critical one.
KEY_DIMENSIONS: tuple[str, ...] = ("team", "feature", "api_key", "environment", "workload")

Name = Annotated[str, Field(min_length=1, max_length=200)]


def _budget_fraction(value: float) -> float:
    if not 0 < value <= 2:
        raise ValueError(f"must be in (0, 2], got {value:g}")
    return value


BudgetFraction = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_budget_fraction)]


def _http_url(value: str) -> str:
    """An http(s) URL with a host: what the HTTP clients can call. A typo is named when the
    file is read, not at the first pause (the value is not echoed: it may be a secret's)."""
    if any(c <= " " or c == "\x7f" for c in value):  # urlsplit would drop some of them
        raise ValueError("must be an http:// or https:// URL, without spaces or control characters")
    try:
        split = urlsplit(value)
        usable = split.scheme in ("http", "https") and bool(split.hostname) and split.port != 0
    except ValueError:  # a port out of range or not a number, a bad [IPv6] host
        usable = False
    if not usable:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


#: A URL SpendBrake calls or links to (the value as written, checked by ``_http_url``).
HttpURL = Annotated[str, AfterValidator(_http_url)]


def _runbook_url(template: str) -> str:
    """A runbook link template: ``{kind}`` and ``{scope}`` filled in, an http(s) URL."""
    try:
        names = [name for _, name, _, _ in Formatter().parse(template) if name is not None]
    except ValueError:
        raise ValueError("has a lone { or }; write {{ or }} for a brace") from None
    for name in names:
        if name not in ("kind", "scope"):
            raise ValueError(f"unknown placeholder {{{name}}}; use {{kind}} and {{scope}}")
    _http_url(template.format(kind="budget", scope="team%3Dsearch"))
    return template


def _slack_user_id(value: str) -> str:
    """A member id as Slack shows it (profile, "Copy member ID"); names change, ids do not."""
    if not re.fullmatch(r"[UW][A-Z0-9]{2,20}", value):
        raise ValueError(f"a Slack member id like U01ABCDEF (not a name), got {value!r}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _scope_field(name: str) -> str:
    if name not in SCOPE_FIELDS:
        raise ValueError(
            f"unknown event field {name!r}{did_you_mean(name, SCOPE_FIELDS)}; use one of "
            + ", ".join(SCOPE_FIELDS)
        )
    return name


#: An event field a dimension set names; checked per item, so an unknown one is named beside
#: a neighbour's problem (a check of the whole list runs only once every item is valid).
ScopeField = Annotated[str, AfterValidator(_scope_field)]


def _check_scope(scope: dict[str, str]) -> dict[str, str]:
    for key, value in scope.items():
        _scope_field(key)
        if key == "workload" and value not in WORKLOADS:
            # Events carry one of these: any other value matches nothing, silently.
            raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, got {value!r}")
    return scope


def _distinct_fields(dims: list[str]) -> list[str]:
    if len(set(dims)) != len(dims):
        raise ValueError(f"{dims} names a field twice")
    return dims


class TopicsConfig(_Section):
    events: Name = "spend.events"
    dlq: Name = "spend.dlq"
    rollups: Name = "spend.rollups"
    alerts: Name = "spend.alerts"
    actions: Name = "spend.actions"
    traces: Name = "spend.traces"

    def names(self) -> list[str]:
        return [self.events, self.dlq, self.rollups, self.alerts, self.actions, self.traces]

    @model_validator(mode="after")
    def _distinct(self) -> TopicsConfig:
        # One topic in two roles feeds a stage its own output: dlq = events re-reads each dead
        # letter as a bad event and dead-letters it again, for ever; rollups = alerts has the
        # act stage read rollups as alerts.
        seen: dict[str, str] = {}
        for role in ("events", "dlq", "rollups", "alerts", "actions", "traces"):
            name = getattr(self, role)
            if name in seen:
                raise ValueError(f"{role} and {seen[name]} are both {name!r}: each needs a topic")
            seen[name] = role
        return self


def check_bootstrap(value: str) -> str:
    """``value`` if it is a Kafka bootstrap list, ``HOST:PORT[,HOST:PORT...]``; else a
    ``ValueError`` naming the entry and what is wrong with it.

    Checked where the value enters: a port that is not a number reached the producer SDK's
    sender thread as a ``ValueError`` from deep inside the Kafka client and stopped it.
    A host alone takes the Kafka port 9092; an IPv6 address goes in brackets with a port.
    """
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"{value!r} has an empty entry; use HOST:PORT[,HOST:PORT...]")
        if "://" in entry:
            raise ValueError(f"{entry!r}: no scheme, write HOST:PORT")
        if entry.startswith("["):  # [::1]:9092
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":") if rest.startswith(":") else None
            if rest and port is None:
                raise ValueError(f"{entry!r} is not [IPv6]:PORT")
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        else:  # a host alone, or a bare IPv6 address: the client's default port
            host, port = entry, None
        if not host:
            raise ValueError(f"{entry!r} has no host; use HOST:PORT")
        if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535, got {port!r}")
    return value


#: Environment variables that set ``kafka`` fields (over the file), for the worker, the
#: CLI and the producer SDK alike: one way to hand a process its broker and credentials.
KAFKA_ENV = {
    "SPENDBRAKE_BOOTSTRAP": "bootstrap_servers",
    "SPENDBRAKE_KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "SPENDBRAKE_KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "SPENDBRAKE_KAFKA_USERNAME": "sasl_username",
    "SPENDBRAKE_KAFKA_PASSWORD": "sasl_password",
    "SPENDBRAKE_KAFKA_SSL_CAFILE": "ssl_cafile",
}


class KafkaConfig(_Section):
    """Where the brokers are and how every client SpendBrake builds talks to them.

    ``PLAINTEXT`` (the default) is for a broker on loopback only. In production use
    ``SASL_SSL`` with SCRAM: each process authenticates as its own principal
    (``sasl_username``), so broker ACLs can let producers write ``spend.events`` only and
    keep ``spend.alerts``/``spend.actions`` to the worker. ``SSL`` with
    ``ssl_certfile``/``ssl_keyfile`` is mutual TLS instead.
    """

    #: ``SPENDBRAKE_BOOTSTRAP`` in the environment overrides this at load time (see KAFKA_ENV).
    bootstrap_servers: Annotated[Name, AfterValidator(check_bootstrap)] = "127.0.0.1:9092"
    topics: TopicsConfig = TopicsConfig()
    partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    group_id: Name = "spendbrake"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: Name | None = None
    sasl_password: SecretStr | None = None
    #: PEM files: the CA that signed the brokers' certificates (None: the system's), and
    #: for mutual TLS this client's certificate and key.
    ssl_cafile: Name | None = None
    ssl_certfile: Name | None = None
    ssl_keyfile: Name | None = None

    @field_validator("sasl_username", "sasl_password", "ssl_cafile", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # ``${SPENDBRAKE_KAFKA_PASSWORD:-}`` unset: no credential, not an empty one.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and "
                "sasl_password (or SPENDBRAKE_KAFKA_USERNAME / SPENDBRAKE_KAFKA_PASSWORD)"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str], **fields: Any) -> KafkaConfig:
        """``fields`` with the KAFKA_ENV variables set in ``env`` on top (the SDK's way).

        Raises ``ConfigError`` naming the variable (or field) whose value is unusable.
        """
        overrides = kafka_env_overrides(env)
        try:
            return cls.model_validate({**fields, **overrides})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else ""
            names = {f: var for var, f in KAFKA_ENV.items() if f in overrides}
            reason = err["msg"].removeprefix("Value error, ")
            raise ConfigError(names.get(field, field), reason) from None

    def security_args(self) -> dict[str, Any]:
        """aiokafka keyword arguments for authentication and TLS (empty for PLAINTEXT)."""
        args: dict[str, Any] = {}
        if self.security_protocol == "PLAINTEXT":
            return args
        args["security_protocol"] = self.security_protocol
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked above
            args["sasl_mechanism"] = self.sasl_mechanism
            args["sasl_plain_username"] = self.sasl_username
            args["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            args["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return args

    def client_args(self) -> dict[str, Any]:
        """``bootstrap_servers`` and the security arguments: what every client is built with."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.security_args()}


def kafka_env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """The ``kafka`` fields that KAFKA_ENV variables set in ``env`` (empty ones ignored)."""
    return {field: env[var] for var, field in KAFKA_ENV.items() if env.get(var, "").strip()}


class DetectorConfig(_Section):
    """One detector run on every rolled-up series of the given metric.

    ``kind`` names a registered detector; the detectors package checks the name
    and ``params`` when it builds the detector.
    """

    kind: Name
    metric: Literal["cost_usd", "calls", "cost_per_call"] = "cost_usd"
    params: dict[str, float | int | str | bool] = {}
    scope: dict[str, str] = {}
    #: The dimension sets it runs on (each one of ``dimensions``); None: all of them. Cost
    #: per call means something per key (one workload); a team's, a model's or the global
    #: one moves whenever the mix of keys does.
    dimensions: list[list[ScopeField]] | None = None

    _scope = field_validator("scope")(_check_scope)

    def runs_on(self, dims: tuple[str, ...]) -> bool:
        """Whether this detector runs on series of the dimension set ``dims``."""
        return self.dimensions is None or sorted(dims) in [sorted(d) for d in self.dimensions]


class BudgetConfig(_Section):
    name: Name
    scope: dict[str, str] = {}
    amount_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    period: Literal["day", "week", "month"] = "month"
    timezone: str = "UTC"
    alert_at: list[BudgetFraction] = [0.5, 0.8, 1.0]
    hard_stop_at: float | None = 1.2
    #: When a new period starts, resume the keys this budget's hard stop paused.
    auto_resume: bool = True
    #: Multi-window burn-rate factors of the even pace: fast pages (1 h and 5 min), slow warns
    #: (6 h and 30 min).
    fast_burn: Annotated[float, Field(gt=1, le=1000)] = 14.4
    slow_burn: Annotated[float, Field(gt=1, le=1000)] = 6.0

    _scope = field_validator("scope")(_check_scope)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
            ) from None
        return value

    @field_validator("alert_at")
    @classmethod
    def _alert_at(cls, values: list[float]) -> list[float]:
        if len(set(values)) != len(values):
            raise ValueError("fractions must be distinct")
        return sorted(values)

    @field_validator("hard_stop_at")
    @classmethod
    def _hard_stop_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 10:
            raise ValueError(f"must be in (0, 10], got {value:g}")
        return value

    @model_validator(mode="after")
    def _hard_stop_above_alerts(self) -> BudgetConfig:
        if (
            self.hard_stop_at is not None
            and self.alert_at
            and self.hard_stop_at < max(self.alert_at)
        ):
            raise ValueError(
                f"hard_stop_at ({self.hard_stop_at:g}) must not be below the highest "
                f"alert_at ({max(self.alert_at):g})"
            )
        return self


class PolicyConfig(_Section):
    """What an anomaly on a matching scope does; the first matching policy wins.

    ``workload`` in ``match`` is the key's class from the ``keys`` section, not the
    events' tag; a pause is only ever applied to a key that section lets be paused.
    """

    match: dict[str, str] = {}
    action: Literal["alert", "pause"] = "alert"
    #: Pause on an anomaly only once its incident is still anomalous this long after it was
    #: first alerted (Prometheus' ``for``): the alert goes out at once, naming the keys held;
    #: a follow-up pauses them. A legitimate burst of a batch key ends within minutes, a
    #: loop does not. 0: pause with the first alert. Burn rates and hard stops never wait.
    confirm_s: Annotated[int, Field(ge=0, le=6 * 3600)] = 0

    _match = field_validator("match")(_check_scope)

    @field_validator("confirm_s")
    @classmethod
    def _confirm_pauses(cls, confirm_s: int, info: ValidationInfo) -> int:
        if confirm_s and info.data.get("action") != "pause":
            raise ValueError("confirm_s delays a pause; it needs action: pause")
        return confirm_s

    @field_validator("action")
    @classmethod
    def _never_pause_critical(cls, action: str, info: ValidationInfo) -> str:
        if action == "pause" and (info.data.get("match") or {}).get("workload") == "critical":
            raise ValueError(
                "critical workloads are never paused; use action: alert for workload: critical"
            )
        return action


def _blank_is_unset(value: Any) -> Any:
    """``${SLACK_BOT_TOKEN:-}`` with the variable unset is "no token", not an empty one."""
    return None if isinstance(value, str) and not value.strip() else value


class SlackConfig(_Section):
    token: SecretStr | None = None
    channel: Name = "#ai-spend"
    #: The Slack Web API's (a proxy, a test double); None: Slack's own.
    base_url: HttpURL | None = None
    #: ``{scope}`` and ``{kind}`` in the template are filled per alert.
    runbook_url: Annotated[str, AfterValidator(_runbook_url)] | None = None
    #: Verifies the "Resume key" / "Snooze 1 h" button requests (Slack app settings).
    signing_secret: SecretStr | None = None
    #: Serve the button endpoint (POST /slack/actions) on this port; None: no buttons.
    interactive_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    #: Slack user ids (U…, W…) whose "Resume" and "Snooze" clicks count; anyone else's
    #: click is refused, audited and told so. None: anyone who can see the message.
    allowed_users: (
        Annotated[
            list[Annotated[str, AfterValidator(_slack_user_id)]],
            Field(min_length=1, max_length=1000),
        ]
        | None
    ) = None
    #: A new incident on a scope alerted less than this ago goes into that thread.
    cooldown_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 3600.0
    #: A message about an alert caught longer than this before it is posted (a new
    #: deployment reading the topic's retention, a stage back from an outage) is marked
    #: as history: "[history, 5 d old]" in its notification text. None: never marked.
    history_after_s: Annotated[float, Field(gt=0)] | None = 3600.0
    #: What becomes of those messages: "post" each (marked), or "summary": each audited as
    #: skipped and one message says what they were (budget thresholds of a period still
    #: running, and alerts whose pause is performed now, are posted either way).
    history: Literal["post", "summary"] = "post"
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    #: Longest wait between two attempts at an undelivered message (jittered backoff).
    retry_cap_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    _unset = field_validator("token", "signing_secret", "base_url", "runbook_url", mode="before")(
        _blank_is_unset
    )


class GatewayConfig(_Section):
    kind: Literal["litellm", "webhook"] = "litellm"
    #: LiteLLM's base URL, or the webhook's endpoint.
    url: HttpURL = "http://127.0.0.1:4000"
    master_key: SecretStr | None = None
    secret: SecretStr | None = None
    dry_run: bool = False
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    #: Longest wait between two attempts at a failed call (jittered backoff).
    retry_cap_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    #: An anomaly's (or a burn rate's) pause is not performed when the act stage reads it
    #: longer than this after it was detected (event time against the stage's clock):
    #: history read late, a new deployment reading the topic's retention or a stage back
    #: from an outage, about a runaway that may have ended long ago. Slack says so and
    #: names the keys. A budget's hard stop is performed while its period runs, not once
    #: it has ended (its resume would follow at once). None: always pause.
    pause_max_age_s: Annotated[float, Field(gt=0)] | None = 6 * 3600.0

    _unset = field_validator("master_key", "secret", mode="before")(_blank_is_unset)


class PricingConfig(_Section):
    """Operator price rows: add models or replace shipped ones (same shape as prices.yaml)."""

    models: list[PriceEntryModel] = []


class StoreConfig(_Section):
    """The report store (``spendbrake worker --stages store``, ``spendbrake report``)."""

    #: DuckDB file; None: ``<state-dir>/store/spend.duckdb``.
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    #: Weeks of trace partials kept, counted back from the newest week stored; older weeks
    #: are dropped whole (reports on them show no cost per trace). None: all, for ever.
    #: Trace partials are the store's bulk: about one row per agent task.
    trace_weeks: Annotated[int, Field(ge=1, le=5200)] | None = None


#: Weeks of trace partials a scheduled digest reads, at most: a week and the week it is
#: sent in; a month spans parts of up to six ISO weeks, and the send falls in a seventh.
DIGEST_TRACE_WEEKS = {"weekly": 2, "monthly": 7}


class DigestConfig(_Section):
    """The Slack digest: ``spendbrake digest`` sends one; ``schedule`` has the worker's
    store stage send each past week or month on its own."""

    schedule: Literal["off", "weekly", "monthly"] = "off"
    #: Default: ``slack.channel``.
    channel: Name | None = None
    by: Literal["team", "feature", "model", "customer"] = "team"
    #: UTC hour of the Monday (weekly) or the 1st (monthly) the digest goes out.
    hour_utc: Annotated[int, Field(ge=0, le=23)] = 9

    @field_validator("schedule", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value


class LimitsConfig(_Section):
    """Bounds on what event data can make the engine hold: attribution values (customers,
    keys, teams) come from callers, and each new one would be a watched series."""

    #: Series the detect stage watches with detectors of their own, per dimension set. New
    #: series past it are watched together, as one whose values are all ``(other)``: their
    #: spend still counts, exactly, in it and in every coarser series. A series silent for
    #: 15 days frees its place.
    series_per_set: Annotated[int, Field(ge=10, le=10_000_000)] = 2_000


class Config(_Section):
    """The whole operator config. Every section has a usable default."""

    kafka: KafkaConfig = KafkaConfig()
    dimensions: list[Annotated[list[ScopeField], AfterValidator(_distinct_fields)]] = [
        list(d) for d in DEFAULT_DIMENSIONS
    ]
    #: The series whose 1-minute windows the worker rolls up and publishes, beside every
    #: series' hours and days: ``budgets``, the scopes of budgets (their burn rates read
    #: minutes; nothing else in SpendBrake does), or ``all``, every series of every set (for
    #: a reader of the rollups topic of your own). Every series' minutes were about 40 % of
    #: the rollup records and of the windows a worker holds open.
    minute_windows: Literal["budgets", "all"] = "budgets"
    detectors: list[DetectorConfig] = [
        # Runaways: hour-of-week baseline, paged within the hour; its calls are counted too,
        # so a loop shows minutes in.
        DetectorConfig(
            kind="baseline", metric="cost_usd", params={"count_x": 8.0, "count_floor": 2.0}
        ),
        # Trends: a day against the same day of the last four weeks, and creeps; for the
        # digest (severity info), not a page.
        DetectorConfig(kind="wow", metric="cost_usd"),
        # A dearer prompt at unchanged volume: a CUSUM over calls of the cost per call,
        # peeked at from the hour's first call; dollar impact is checked on cost (excess
        # per call x calls) by the detector stage.
        DetectorConfig(kind="shift", metric="cost_per_call", dimensions=[["api_key"]]),
    ]
    budgets: list[BudgetConfig] = []
    #: Each key's class and whether it may be paused; a key no rule names is alerted only.
    keys: KeysConfig = KeysConfig()
    policies: list[PolicyConfig] = [
        # A batch key's legitimate burst and a loop look alike for their first minutes; a
        # burst ends: pause once the anomaly has lasted ten minutes (the evaluation's bar
        # of no wrong pause holds on every seed from 600 s; the loop runs ~15 min longer).
        PolicyConfig(match={"workload": "batch"}, action="pause", confirm_s=600),
        PolicyConfig(match={"workload": "critical"}, action="alert"),
    ]
    slack: SlackConfig = SlackConfig()
    gateway: GatewayConfig = GatewayConfig()
    pricing: PricingConfig = PricingConfig()
    store: StoreConfig = StoreConfig()
    digest: DigestConfig = DigestConfig()
    limits: LimitsConfig = LimitsConfig()

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, sets: list[list[str]]) -> list[list[str]]:
        # Each one's fields are checked already (ScopeField, _distinct_fields).
        if (repeated := repeated_set(sets)) is not None:
            raise ValueError(repeated)
        return sets

    @property
    def confirm_after(self) -> tuple[int, ...]:
        """The distinct ``confirm_s`` of pause policies, ascending: the ages at which the
        detect stage states a still-anomalous incident again, for the policy to pause."""
        return tuple(sorted({p.confirm_s for p in self.policies if p.confirm_s}))

    @property
    def watches_keys(self) -> bool:
        """Does the detect stage watch keys' own series? Then an anomaly pauses only the key
        its scope names (``actions.apply_policies``)."""
        return any("api_key" in dims for dims in self.dimensions)

    def rollup_dimensions(self) -> list[tuple[str, ...]]:
        """What the streamer rolls up: the configured sets, each budget's scope fields, and
        the key directory set, each once. Detectors run on the configured sets only."""
        sets = [tuple(d) for d in self.dimensions]
        seen = {tuple(sorted(d)) for d in sets}
        for extra in [*(tuple(sorted(b.scope)) for b in self.budgets), KEY_DIMENSIONS]:
            if tuple(sorted(extra)) not in seen:
                seen.add(tuple(sorted(extra)))
                sets.append(tuple(extra))
        return sets

    def budget_minutes(self, dims: Sequence[str]) -> frozenset[tuple[str | None, ...]] | None:
        """The series of the set ``dims`` whose minutes budgets read (their scopes' values,
        in the set's field order); None when no budget is scoped on that set."""
        key = sorted(dims)
        scopes = [b.scope for b in self.budgets if sorted(b.scope) == key]
        if not scopes:
            return None
        return frozenset(tuple(scope[d] for d in dims) for scope in scopes)

    def rollup_windows(
        self, sets: Sequence[Sequence[str]] | None = None
    ) -> tuple[list[tuple[int, ...]], list[frozenset[tuple[str | None, ...]] | None]]:
        """What the worker rolls up of each set of ``sets`` (default ``rollup_dimensions()``;
        a running worker's, built from the config it started with): its window sizes, and
        the series whose minutes it keeps (None: every series'), as ``minute_windows`` says."""
        if sets is None:
            sets = self.rollup_dimensions()
        if self.minute_windows == "all":
            return [ROLLUP_WINDOWS_S] * len(sets), [None] * len(sets)
        minutes = [self.budget_minutes(dims) for dims in sets]
        sizes = [ROLLUP_WINDOWS_S if m is not None else ROLLUP_WINDOWS_S[1:] for m in minutes]
        return sizes, minutes

    @field_validator("budgets")
    @classmethod
    def _unique_budget_names(cls, budgets: list[BudgetConfig]) -> list[BudgetConfig]:
        if (repeated := repeated_name([b.name for b in budgets])) is not None:
            raise ValueError(repeated)
        return budgets

    @model_validator(mode="after")
    def _traces_for_the_digest(self) -> Config:
        """The scheduled digest reads its period's trace partials after the next week's
        first are stored: too few weeks kept, and its per-task line was always missing."""
        weeks, schedule = self.store.trace_weeks, self.digest.schedule
        needs = DIGEST_TRACE_WEEKS.get(schedule, 0)
        if weeks is not None and weeks < needs:
            raise ValueAt(
                ("store", "trace_weeks"),
                f"keeps {weeks} week(s) of traces; digest.schedule {schedule} needs {needs} "
                "(the digest reads its whole period after the next one began)",
            )
        return self


# The section rules pydantic checks only once every item is valid: the config loader asks
# them of the items as written too, so one run of ``validate`` names every problem.


def repeated_set(sets: Sequence[Sequence[str] | None]) -> str | None:
    """What is wrong when a dimension set is listed twice (in any field order), else None;
    None items (unusable as written) are skipped."""
    seen: set[tuple[str, ...]] = set()
    for dims in sets:
        if dims is None:
            continue
        key = tuple(sorted(dims))
        if key in seen:
            return f"{list(dims)} is listed twice"
        seen.add(key)
    return None


def repeated_name(names: Sequence[str | None]) -> str | None:
    """What is wrong when two budgets share a name, else None (None names skipped)."""
    seen: set[str] = set()
    for name in names:
        if name is None:
            continue
        if name in seen:
            return f"budget name {name!r} is used twice"
        seen.add(name)
    return None
