"""Operator config: defaults, ${ENV} secrets, and one-line errors with file position and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from spendbrake._config_loader import ConfigErrors, load_config
from spendbrake.schemas import Config, ConfigError

GOOD = """\
kafka:
  bootstrap_servers: kafka:9092
  partitions: 8
dimensions: [[], [team], [team, feature]]
budgets:
  - name: search-monthly
    scope: {team: search}
    amount_usd: 1000
    period: month
    timezone: Europe/Paris
    alert_at: [0.8, 0.5, 1.0]
    hard_stop_at: 1.2
policies:
  - match: {workload: batch}
    action: pause
  - match: {workload: critical}
    action: alert
slack:
  token: ${SLACK_BOT_TOKEN}
  channel: "#ai-spend"
gateway:
  kind: litellm
  url: http://127.0.0.1:4000
  master_key: ${LITELLM_MASTER_KEY}
"""

ENV = {"SLACK_BOT_TOKEN": "xoxb-secret", "LITELLM_MASTER_KEY": "sk-master-secret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spendbrake.yaml"
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_config(write(tmp_path, text), env=ENV if env is None else env)
    return [str(e) for e in info.value.errors]


def test_defaults_need_no_file() -> None:
    config = load_config(None, env={})
    assert config == Config()
    assert config.kafka.topics.names() == [
        "spend.events",
        "spend.dlq",
        "spend.rollups",
        "spend.alerts",
        "spend.actions",
        "spend.traces",
    ]
    assert config.dimensions[0] == [] and ["team", "feature"] in config.dimensions
    assert [p.action for p in config.policies] == ["pause", "alert"]
    assert config.store.path is None


def test_example_config_loads_with_the_report_dimensions() -> None:
    example = Path(__file__).parents[2] / "examples" / "spendbrake.yaml"
    config = load_config(example, env={})
    assert ["team", "model"] in config.dimensions and config.store.path is None


def test_good_file_loads_and_hides_secrets(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env=ENV)
    budget = config.budgets[0]
    assert budget.alert_at == [0.5, 0.8, 1.0] and budget.timezone == "Europe/Paris"
    assert config.slack.token is not None and config.slack.token.get_secret_value() == "xoxb-secret"
    assert "xoxb-secret" not in repr(config) and "sk-master-secret" not in str(config)


def test_bootstrap_env_overrides_file(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, GOOD), env={**ENV, "SPENDBRAKE_BOOTSTRAP": "10.1.1.1:9093"}
    )
    assert config.kafka.bootstrap_servers == "10.1.1.1:9093"


def test_missing_env_var_is_named_with_location(tmp_path: Path) -> None:
    assert errors_of(tmp_path, GOOD, env={"SLACK_BOT_TOKEN": "x"}) == [
        f"{tmp_path}/spendbrake.yaml:24:15: gateway.master_key: environment variable LITELLM_MASTER_KEY is not set"
    ]


def test_each_problem_has_line_column_and_path(tmp_path: Path) -> None:
    text = GOOD.replace("alert_at: [0.8, 0.5, 1.0]", "alert_at: [0.8, 5]").replace(
        "hard_stop_at: 1.2", "hard_stop: 1.2"
    )
    text = text.replace(
        "    action: alert\n",
        "    action: alert\n  - match: {workload: critical}\n    action: pause\n",
    )
    text = text.replace("amount_usd: 1000", "amount_usd: -1")
    name = f"{tmp_path}/spendbrake.yaml"
    assert errors_of(tmp_path, text) == [
        f"{name}:8:17: budgets[0].amount_usd: must be greater than 0, got -1",
        f"{name}:11:21: budgets[0].alert_at[1]: must be in (0, 2], got 5",
        f"{name}:12:5: budgets[0].hard_stop: unknown key 'hard_stop' (did you mean 'hard_stop_at'?)",
        f"{name}:19:13: policies[2].action: critical workloads are never paused; use action: alert for workload: critical",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka: {partitions: many}\n", "kafka.partitions: must be a valid integer"),
        ("dimensions: [[team, colour]]\n", "dimensions[0][1]: unknown event field 'colour'"),
        ("dimensions: [[team, team]]\n", "dimensions[0]: ['team', 'team'] names a field twice"),
        ("dimensions: [[team], [team]]\n", "dimensions: ['team'] is listed twice"),
        (
            "budgets:\n  - {name: a, amount_usd: 5, alert_at: [0.5, 1.5], hard_stop_at: 1.2}\n",
            "hard_stop_at (1.2) must not be below the highest alert_at (1.5)",
        ),
        (
            "budgets:\n  - {name: a, amount_usd: 5, timezone: Mars/Base}\n",
            "budgets[0].timezone: unknown time zone 'Mars/Base'",
        ),
        (
            "budgets:\n  - {name: a, amount_usd: 5}\n  - {name: a, amount_usd: 6}\n",
            "budget name 'a' is used twice",
        ),
        (
            "policies:\n  - {match: {wrkload: batch}, action: pause}\n",
            "policies[0].match: unknown event field 'wrkload'",
        ),
        (
            "policies:\n  - {match: {workload: batch}, action: alert, confirm_s: 900}\n",
            "policies[0].confirm_s: confirm_s delays a pause; it needs action: pause",
        ),
        (
            "policies:\n  - {match: {workload: batch}, action: pause, confirm_s: 86400}\n",
            "policies[0].confirm_s: must be less than or equal to 21600, got 86400",
        ),
        ("minute_windows: every\n", "minute_windows: must be 'budgets' or 'all', got \"every\""),
        ("gateway: {kind: envoy}\n", "gateway.kind: must be 'litellm' or 'webhook', got \"envoy\""),
        (  # reached the clients' own parser, in the SDK a ValueError that stopped its sender
            "kafka: {bootstrap_servers: 'kafka:909x'}\n",
            "kafka.bootstrap_servers: 'kafka:909x': the port must be a number from 1 to 65535",
        ),
        ("slak: {channel: x}\n", "slak: unknown key 'slak' (did you mean 'slack'?)"),
        # In YAML's terms, not pydantic's ("must be a valid list", "a valid dictionary").
        (
            "budgets:\n  - {name: a, amount_usd: 5, alert_at: 3}\n",
            "budgets[0].alert_at: must be a list ([a, b], or one '- item' line each), got 3",
        ),
        ("slack: 5\n", "slack: must be a mapping (one 'key: value' line each), got 5"),
        ("store: {pth: x.duckdb}\n", "store.pth: unknown key 'pth' (did you mean 'path'?)"),
        (  # each dead letter read back as a bad event and dead-lettered again, for ever
            "kafka: {topics: {dlq: spend.events}}\n",
            "kafka.topics: dlq and events are both 'spend.events': each needs a topic",
        ),
    ],
)
def test_bad_values(tmp_path: Path, text: str, message: str) -> None:
    errors = errors_of(tmp_path, text, env={})
    assert any(message in e for e in errors), errors


def test_an_unknown_dimension_field_is_named_beside_a_neighbours_problem(tmp_path: Path) -> None:
    """The fields of a set were checked only once every set was a list: `colour` was named
    after `team` (not a list) was fixed."""
    name = f"{tmp_path}/spendbrake.yaml"
    text = (
        "dimensions: [[team, colour], team]\ndetectors: [{kind: wow, dimensions: [[tenant], 3]}]\n"
    )
    errors = errors_of(tmp_path, text, env={})
    assert [e.split(": ", 2)[:2] for e in errors] == [
        [f"{name}:1:21", "dimensions[0][1]"],
        [f"{name}:1:30", "dimensions[1]"],
        [f"{name}:2:39", "detectors[0].dimensions[0][0]"],
        [f"{name}:2:48", "detectors[0].dimensions[1]"],
    ]
    assert "unknown event field 'colour'" in errors[0] and "tenant" in errors[2]


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    with pytest.raises(Exception) as info:
        load_config(write(tmp_path, "kafka:\n  partitions: [1, 2\n"), env={})
    assert str(info.value).startswith(
        f"{tmp_path}/spendbrake.yaml:"
    ) and "YAML syntax error" in str(info.value)


def test_a_file_not_in_utf8_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "spendbrake.yaml"
    path.write_bytes(b"budgets: []\n# caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"spendbrake.yaml: not UTF-8 text \(byte 0xe9 at offset 17\)"
    ):
        load_config(path, env={})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_unknown_detector_and_bad_params_are_named(tmp_path: Path) -> None:
    text = "detectors:\n  - kind: baselin\n  - kind: wow\n    params: {rise: fast}\n  - kind: baseline\n    params: {min_usd: 2}\n"
    errors = errors_of(tmp_path, text, env={})
    name = f"{tmp_path}/spendbrake.yaml"
    assert errors[0].startswith(
        f"{name}:2:11: detectors[0].kind: unknown detector 'baselin' (did you mean 'baseline'?); "
        "choose one of baseline,"
    )
    assert errors[1].startswith(f"{name}:4:20: detectors[1].params.rise: must be a number, got")
    assert len(errors) == 2


def test_every_bad_parameter_of_a_detector_is_named_at_its_own_line(tmp_path: Path) -> None:
    text = "detectors:\n  - kind: shift\n    params:\n      shift_x: 0.5\n      hh: 3\n      h: 4\n"
    errors = errors_of(tmp_path, text, env={})
    name = f"{tmp_path}/spendbrake.yaml"
    assert errors == [
        f"{name}:4:16: detectors[0].params.shift_x: must be > 1, got 0.5",
        f"{name}:5:7: detectors[0].params.hh: unknown parameter 'hh' for detector 'shift' "
        "(did you mean 'h'?); "
        "choose from shift_x, h, min_usd, alpha, warmup_n, settle_n, clip_z, min_scale",
    ]


def test_bad_detector_parameters_are_named_beside_other_sections_problems(tmp_path: Path) -> None:
    """One run of ``validate`` names every problem, in file order (a detector's parameters
    were checked only once the rest of the file validated)."""
    text = (
        "budgets:\n  - {name: all, amount_usd: -5, period: day}\n"
        "detectors:\n  - kind: baseline\n    params: {seasn: 24}\n"
        "slack:\n  retry_max_s: -1\n"
    )
    errors = errors_of(tmp_path, text, env={})
    name = f"{tmp_path}/spendbrake.yaml"
    assert [e.split(": ", 2)[:2] for e in errors] == [
        [f"{name}:2:29", "budgets[0].amount_usd"],
        [f"{name}:5:14", "detectors[0].params.seasn"],
        [f"{name}:7:3", "slack.retry_max_s"],
    ]
    # A detectors section pydantic refuses is named by pydantic alone.
    text = "budgets:\n  - {name: all, amount_usd: -5}\ndetectors:\n  - kind: 3\n    params: 7\n"
    errors = errors_of(tmp_path, text, env={})
    assert all(not e.split(": ", 2)[1].startswith("detectors[0].params.") for e in errors)
    # Another entry's mistake does not hide a valid entry's bad parameter (it did until
    # the other was mended).
    text = (
        "detectors:\n  - kind: baseline\n    params: {count_x: -3}\n"
        "  - kind: wow\n    dimensions: [[tema]]\n"
    )
    errors = errors_of(tmp_path, text, env={})
    assert [e.split(": ", 2)[1] for e in errors] == [
        "detectors[0].params.count_x",
        "detectors[1].dimensions[0][0]",
    ], errors


def test_a_parameter_good_beside_another_is_not_blamed(tmp_path: Path) -> None:
    # `alert_order` may be at most `order`: 6 is bad beside the default order (5), good
    # beside order 8. Only the bad `levels` is named.
    text = "detectors:\n  - kind: generic\n    params: {order: 8, alert_order: 6, levels: 1}\n"
    errors = errors_of(tmp_path, text, env={})
    assert len(errors) == 1 and "detectors[0].params.levels: must be an int in [2, 32]" in errors[0]
    text = "detectors:\n  - kind: generic\n    params: {order: 3, alert_order: 6}\n"
    (error,) = errors_of(tmp_path, text, env={})
    assert "detectors[0].params.alert_order: must be an int in [1, order], got 6" in error


def test_an_empty_secret_is_no_secret(tmp_path: Path) -> None:
    # `${SLACK_BOT_TOKEN:-}` with the variable unset: Slack is off, not "on with no token".
    path = write(tmp_path, "slack: {token: '${T:-}'}\ngateway: {master_key: '  '}\n")
    config = load_config(path, env={})
    assert config.slack.token is None and config.gateway.master_key is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gateway: {url: not-a-url}\n", "1:16: gateway.url: must be an http:// or https:// URL"),
        ("gateway: {kind: webhook, url: 'ftp://h/x'}\n", "gateway.url: must be an http://"),
        ("gateway: {url: 'http://:4000'}\n", "gateway.url: must be an http:// or https:// URL"),
        ("gateway: {url: 'http://gw:99999'}\n", "gateway.url: must be an http:// or https://"),
        (
            "gateway: {url: ' http://gw'}\n",
            "gateway.url: must be an http:// or https:// URL, without",
        ),
        ("slack: {base_url: slack.example/api}\n", "slack.base_url: must be an http://"),
        ("slack: {runbook_url: 'wiki/{kind}'}\n", "slack.runbook_url: must be an http://"),
        (
            "slack: {runbook_url: 'https://wiki/{team}'}\n",
            "slack.runbook_url: unknown placeholder {team}; use {kind} and {scope}",
        ),
        ("slack: {runbook_url: 'https://wiki/{kind'}\n", "slack.runbook_url: has a lone {"),
    ],
)
def test_a_url_that_cannot_work_is_named_when_the_file_is_read(
    tmp_path: Path, text: str, message: str
) -> None:
    """`gateway: {url: not-a-url}` validated ok and failed only when a pause was tried."""
    (error,) = errors_of(tmp_path, text, env={})
    assert message in error, error


def test_urls_from_the_environment_are_checked_after_substitution(tmp_path: Path) -> None:
    text = (
        "gateway: {url: '${GATEWAY_URL}'}\n"
        "slack: {base_url: '${SLACK_API:-}', runbook_url: 'https://wiki/${WIKI}/{kind}'}\n"
    )
    env = {"GATEWAY_URL": "https://litellm.internal:4000", "WIKI": "runbooks"}
    config = load_config(write(tmp_path, text), env=env)
    assert config.gateway.url == "https://litellm.internal:4000"
    assert config.slack.base_url is None  # unset with an empty default: Slack's own
    assert config.slack.runbook_url == "https://wiki/runbooks/{kind}"
    (error,) = errors_of(tmp_path, text, env={**env, "GATEWAY_URL": "litellm-secret-host:4000"})
    assert "gateway.url: must be an http:// or https:// URL with a host" in error
    assert "litellm-secret-host" not in error


KEYS_GOOD = """\
keys:
  rules:
    - api_key: support-bot-prod
      workload: critical
    - api_key: "*-batch"
      workload: batch
    - api_key: "eval-*"
      workload: standard
      pausable: false
"""


def test_keys_rules_load_and_classify_in_order(tmp_path: Path) -> None:
    keys = load_config(write(tmp_path, KEYS_GOOD), env={}).keys
    assert [r.api_key for r in keys.rules] == ["support-bot-prod", "*-batch", "eval-*"]
    assert keys.classify("growth-email-batch").pausable
    assert not keys.classify("eval-1").pausable
    assert keys.classify("unknown").protection == "unlisted"


def test_bad_keys_rules_are_named_with_their_line(tmp_path: Path) -> None:
    text = """\
keys:
  rules:
    - api_key: support-bot-prod
      workload: crit
    - api_key: payments-prod
      workload: critical
      pausable: true
    - api_key: litellm_proxy_master_key
      workload: batch
    - api_kye: x
      workload: batch
"""
    errors = errors_of(tmp_path, text, env={})
    name = str(tmp_path / "spendbrake.yaml")
    assert errors == [
        f"{name}:4:17: keys.rules[0].workload: must be 'critical', 'standard' or 'batch', "
        'got "crit"',
        f"{name}:7:17: keys.rules[1].pausable: critical keys are never paused; drop pausable "
        "or use workload: standard",
        f"{name}:8:16: keys.rules[2].api_key: litellm_proxy_master_key is LiteLLM's master key, "
        "never paused; use workload: critical or pausable: false",
        f"{name}:10:7: keys.rules[3].api_key: is required",
        f"{name}:10:7: keys.rules[3].api_kye: unknown key 'api_kye' (did you mean 'api_key'?)",
    ]


def test_a_rule_an_earlier_one_hides_is_an_error(tmp_path: Path) -> None:
    """The support bot listed as critical below a `*` that makes every key batch would look
    protected and be paused: the first match wins."""
    text = """\
keys:
  rules:
    - {api_key: "sk-*", workload: batch}
    - {api_key: "*", workload: batch}
    - {api_key: "support-bot-prod", workload: critical}
"""
    errors = errors_of(tmp_path, text, env={})
    name = str(tmp_path / "spendbrake.yaml")
    assert errors == [
        f"{name}:5:17: keys.rules[2].api_key: never matches: rules[1] (api_key '*') comes first "
        "and matches every key this one does (the first match wins)"
    ]
    hidden_glob = 'keys:\n  rules:\n    - {api_key: "sk-*", workload: batch}\n' + (
        '    - {api_key: "sk-prod-*", workload: critical}\n'
    )
    assert (
        "keys.rules[1].api_key: never matches: rules[0]"
        in errors_of(tmp_path, hidden_glob, env={})[0]
    )
    # Overlapping globs the check cannot prove hidden are left to first-match-wins.
    ok = 'keys:\n  rules:\n    - {api_key: "*-prod", workload: critical}\n' + (
        '    - {api_key: "sk-*", workload: batch}\n'
    )
    assert len(load_config(write(tmp_path, ok), env={}).keys.rules) == 2


def test_a_hidden_rule_is_named_beside_another_rules_problem(tmp_path: Path) -> None:
    """The section's check of rule order ran only once every rule was valid: the hidden
    support bot was named only after `workload: vip` was fixed."""
    text = """\
keys:
  rules:
    - {api_key: "*", workload: batch}
    - {api_key: support-bot-prod, workload: critical}
    - {api_key: vip-bot, workload: vip}
"""
    name = str(tmp_path / "spendbrake.yaml")
    assert errors_of(tmp_path, text, env={}) == [
        f"{name}:4:17: keys.rules[1].api_key: never matches: rules[0] (api_key '*') comes first "
        "and matches every key this one does (the first match wins)",
        f"{name}:5:36: keys.rules[2].workload: must be 'critical', 'standard' or 'batch', "
        'got "vip"',
    ]
    # A rule whose api_key is itself refused is named for that alone.
    text = (
        'keys:\n  rules:\n    - {api_key: "*", workload: batch}\n    - {api_key: "", workload: x}\n'
    )
    assert [e.split(": ", 2)[1] for e in errors_of(tmp_path, text, env={})] == [
        "keys.rules[1].api_key",
        "keys.rules[1].workload",
    ]


#: The classic "billion laughs": nine aliases per level, nine levels (9**9 strings).
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_at_once_with_its_position(tmp_path: Path) -> None:
    import tracemalloc

    assert len(BOMB) < 400
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, BOMB), env={})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # expanded, it is gigabytes
    message = str(info.value)
    assert message.startswith(f"{tmp_path}/spendbrake.yaml:5:8: "), message
    assert "aliases expand past 10,000 values" in message


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("x: &a [1, *a]\n", ":1:11: ", "alias *a refers to itself"),
        ("x: " + "[" * 100 + "]" * 100 + "\n", ":1:67: ", "nested more than 64 levels deep"),
    ],
)
def test_self_reference_and_deep_nesting_are_refused(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert str(info.value) == f"{tmp_path}/spendbrake.yaml{where}{reason}"


def test_a_few_aliases_for_shared_settings_still_load(tmp_path: Path) -> None:
    text = (
        "budgets:\n"
        "  - &monthly {name: a, scope: {team: a}, amount_usd: 5, alert_at: [0.5, 0.9]}\n"
        "  - {<<: *monthly, name: b, scope: {team: b}}\n"
    )
    config = load_config(write(tmp_path, text), env={})
    assert [(b.name, b.alert_at) for b in config.budgets] == [("a", [0.5, 0.9]), ("b", [0.5, 0.9])]


def test_a_key_written_twice_is_named_not_dropped(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys: a second `budgets:` section silently dropped
    every budget of the first. Each duplicate, at any depth, is named at its own line."""
    text = (
        "budgets:\n"
        "  - {name: a, amount_usd: 5}\n"
        "slack: {channel: x, 'channel': y}\n"
        "budgets:\n"
        "  - name: b\n"
        "    amount_usd: 6\n"
        "    amount_usd: 7\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_config(write(tmp_path, text), env={})
    name = f"{tmp_path}/spendbrake.yaml"
    assert [str(e) for e in info.value.errors] == [
        f"{name}:3:21: slack.channel: duplicate key 'channel' (first at line 3); "
        "YAML would keep only the last",
        f"{name}:4:1: budgets: duplicate key 'budgets' (first at line 1); "
        "YAML would keep only the last",
        f"{name}:7:5: budgets[0].amount_usd: duplicate key 'amount_usd' (first at line 6); "
        "YAML would keep only the last",
    ]
    # A key a merge (`<<: *anchor`) brings in may be overridden: that is what merges are for.
    merged = (
        "budgets:\n  - &base {name: a, amount_usd: 5}\n  - {<<: *base, name: b, amount_usd: 9}\n"
    )
    config = load_config(write(tmp_path, merged), env={})
    assert [(b.name, b.amount_usd) for b in config.budgets] == [("a", 5), ("b", 9)]


SECRET = "xoxb-1234-very-secret-token"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("kafka: {partitions: '${SLACK_BOT_TOKEN}'}\n", "kafka.partitions"),
        ("slack: {timeout_s: '${SLACK_BOT_TOKEN}'}\n", "slack.timeout_s"),
        ("budgets: [{name: a, amount_usd: 5, timezone: '${SLACK_BOT_TOKEN}'}]\n", "timezone"),
        ("gateway: {kind: '${SLACK_BOT_TOKEN}'}\n", "gateway.kind"),
        ("detectors: [{kind: wow, params: {rise: 'x${SLACK_BOT_TOKEN}'}}]\n", "params"),
    ],
)
def test_a_secret_in_the_wrong_field_is_never_echoed(tmp_path: Path, text: str, path: str) -> None:
    errors = errors_of(tmp_path, text, env={"SLACK_BOT_TOKEN": SECRET})
    assert len(errors) == 1 and path in errors[0], errors
    assert "SLACK_BOT_TOKEN" in errors[0], errors  # the message says where the value came from
    assert SECRET not in errors[0] and "very-secret" not in errors[0], errors


def test_validate_prints_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from spendbrake.cli import main

    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-master-" + "7" * 24)
    path = write(tmp_path, "gateway: {timeout_s: '${LITELLM_MASTER_KEY}'}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "gateway.timeout_s" in result.output and "7777" not in result.output, result.output


def test_kafka_credentials_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    env = {
        "SPENDBRAKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SPENDBRAKE_KAFKA_USERNAME": "spendbrake-worker",
        "SPENDBRAKE_KAFKA_PASSWORD": "kafka-pw-1234",
    }
    config = load_config(None, env=env)
    kafka = config.kafka
    assert (kafka.security_protocol, kafka.sasl_username) == ("SASL_SSL", "spendbrake-worker")
    args = kafka.client_args()
    assert args["sasl_plain_password"] == "kafka-pw-1234" and args["ssl_context"] is not None
    assert "kafka-pw-1234" not in repr(config)
    assert load_config(None, env={}).kafka.client_args() == {"bootstrap_servers": "127.0.0.1:9092"}
    text = "kafka: {security_protocol: SASL_SSL, sasl_username: w, sasl_password: '${KPW}'}\n"
    assert load_config(write(tmp_path, text), env={"KPW": "x" * 12}).kafka.sasl_password


def test_sasl_without_a_password_is_named(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "kafka: {security_protocol: SASL_SSL, sasl_username: w}\n", env={})
    assert errors == [
        f"{tmp_path}/spendbrake.yaml:1:8: kafka: security_protocol SASL_SSL needs sasl_username"
        " and sasl_password (or SPENDBRAKE_KAFKA_USERNAME / SPENDBRAKE_KAFKA_PASSWORD)"
    ]


def test_minutes_are_rolled_up_for_budgets_scopes_unless_asked_for_all(tmp_path: Path) -> None:
    path = tmp_path / "spendbrake.yaml"
    path.write_text(
        "dimensions: [[team], [team, feature], [model]]\n"
        "budgets:\n"
        "  - {name: search, scope: {team: search}, amount_usd: 50}\n"
        "  - {name: chat, scope: {feature: chat, team: support}, amount_usd: 50}\n"
        "  - {name: ops, scope: {team: ops}, amount_usd: 50}\n"
    )
    config = load_config(path, env={})
    assert config.minute_windows == "budgets"
    sets = config.rollup_dimensions()
    sizes, minutes = config.rollup_windows()
    by_set = dict(zip(sets, zip(sizes, minutes, strict=True), strict=True))
    assert by_set[("team",)] == ((60, 3600, 86400), frozenset({("search",), ("ops",)}))
    # A scope's values in the set's own field order, whatever order the budget wrote them in.
    assert by_set[("team", "feature")] == ((60, 3600, 86400), frozenset({("support", "chat")}))
    assert by_set[("model",)] == ((3600, 86400), None)
    everything = config.model_copy(update={"minute_windows": "all"}).rollup_windows()
    assert everything == ([(60, 3600, 86400)] * len(sets), [None] * len(sets))


def test_a_repeated_budget_name_or_set_is_named_beside_a_neighbours_problem(
    tmp_path: Path,
) -> None:
    """A second budget of the same name, or a dimension set listed twice, was named only
    once every budget (every set) was valid: one run of `validate` names all of it."""
    text = (
        "budgets:\n"
        "  - {name: search, scope: {team: search}, period: month, amount_usd: -5}\n"
        "  - {name: search, scope: {team: search}, period: month, amount_usd: 100}\n"
        "dimensions: [[team], [team], [colour]]\n"
    )
    errors = errors_of(tmp_path, text, env={})
    said = [e.split(": ", 1)[1] for e in errors]
    assert any(s.startswith("budgets[0].amount_usd: ") for s in said), said
    assert any("budget name 'search' is used twice" in s for s in said), said
    assert any(s.startswith("dimensions[2][0]: unknown event field 'colour'") for s in said)
    assert any("['team'] is listed twice" in s for s in said), said


def test_a_scope_on_a_workload_no_event_has_is_refused(tmp_path: Path) -> None:
    """`workload: bach` in a pause policy matched no key, ever, and said nothing: the batch
    runaways it was written for ran on. Events carry one of three workloads."""
    text = (
        "budgets:\n  - {name: b, scope: {workload: batchy}, period: day, amount_usd: 10}\n"
        "policies:\n  - {match: {workload: bach}, action: pause}\n"
    )
    said = [e.split(": ", 1)[1] for e in errors_of(tmp_path, text, env={})]
    assert said == [
        "budgets[0].scope: workload must be one of critical, standard, batch, got 'batchy'",
        "policies[0].match: workload must be one of critical, standard, batch, got 'bach'",
    ]


def test_trace_weeks_too_few_for_the_scheduled_digest_is_named(tmp_path: Path) -> None:
    """With one week kept, last week's traces were dropped at the new week's first write,
    before the Monday digest read them: its per-task line was always missing."""
    text = "store:\n  trace_weeks: 1\ndigest:\n  schedule: weekly\n"
    (error,) = errors_of(tmp_path, text)
    assert (
        ":2:16: store.trace_weeks: keeps 1 week(s) of traces; digest.schedule weekly needs 2"
        in (error)
    ), error
    monthly = "store:\n  trace_weeks: 7\ndigest:\n  schedule: monthly\n"
    assert load_config(write(tmp_path, monthly), env=ENV).store.trace_weeks == 7
    assert errors_of(tmp_path, "store:\n  trace_weeks: 6\ndigest:\n  schedule: monthly\n")


def test_a_secret_quoted_with_its_escapes_is_hidden_too(tmp_path: Path) -> None:
    """A reason quotes a bad value with ``!r``: a backslash or quote in a secret from the
    environment is escaped there, and the plain value no longer matched, so the secret was
    shown (and posted to Slack by a hot reload)."""
    secret = 'Pa\\ss-w0rd-"quoted"\'x'
    text = 'slack:\n  allowed_users: [U0123ABCD, "${SECRET}"]\n'
    errors = errors_of(tmp_path, text, env={"SECRET": secret})
    assert errors and all(secret not in e and repr(secret)[1:-1] not in e for e in errors)
    assert any("${SECRET}" in e for e in errors), errors
