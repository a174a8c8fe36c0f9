"""Read an operator YAML file into a ``schemas.Config``.

Every problem becomes a ``ConfigError`` whose message carries the file
position and the config path (``cfg.yaml:12:5: budgets[0].alert_at: ...``), so
an operator never reads a pydantic or YAML traceback. Secrets come from
``${ENV_VAR}`` (or ``${ENV_VAR:-default}``) references and are never echoed back: a
message about a field whose value came from the environment names the variable, not
the value, and no message quotes a value read from one.

YAML aliases are counted as they are composed: a file whose aliases would expand past
``MAX_ALIAS_NODES`` nodes (a "billion laughs" bomb of a few hundred bytes needs billions)
is refused at the alias that crosses the limit, before anything is expanded, and so is
nesting deeper than ``MAX_DEPTH``. A key written twice in one mapping (YAML would keep
the last and drop the first without a word: a second ``budgets:`` loses every budget of the
first) is refused too, each one named. Hot reload reads files with this same loader.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from spendbrake.schemas import (
    KAFKA_ENV,
    Config,
    ConfigError,
    DetectorConfig,
    ValueAt,
    did_you_mean,
    hidden_rule,
    kafka_env_overrides,
    repeated_name,
    repeated_set,
    show,
)

# ${VAR} or ${VAR:-default}, as in shells and docker compose.
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: Nodes YAML aliases may add to a config, in all: anchors for a few shared settings
#: need tens; the 337-byte bomb of nine aliases per level would need 9**9.
MAX_ALIAS_NODES = 10_000
#: Collections inside collections; a config needs under ten.
MAX_DEPTH = 64
#: Values read from the environment shorter than this are not searched for in messages
#: (a port or a flag is not a secret, and "1" would blank every digit).
_MIN_SCRUB_CHARS = 3

Loc = tuple[str | int, ...]


class ConfigErrors(ConfigError):
    """Several config problems at once; ``errors`` lists each one-line message."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("", "\n".join(str(e) for e in errors))


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    unread: Collection[str] = (),
) -> Config:
    """Load and validate a config file; None gives the defaults (plus env overrides).

    ``unread``: top-level sections the caller does not use, taken as the defaults, unchecked
    (``replay`` with a production file reads no ``kafka`` or ``slack``: their ``${VAR}``
    need not be set on the machine replaying); ``validate`` checks every section.
    """
    env = os.environ if env is None else env
    if path is None:
        data: Any = {}
        marks: dict[Loc, str] = {}
        name = "<defaults>"
    else:
        name = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError("", f"cannot read config: {exc.strerror}", name) from None
        return config_from_bytes(raw, name, env, unread)
    return build_config(data, marks, env, name, unread)


def config_from_bytes(
    raw: bytes, name: str, env: Mapping[str, str] | None = None, unread: Collection[str] = ()
) -> Config:
    """``load_config`` of a file's bytes already read (hot reload parses exactly the bytes
    it compared with the config in force, not a second read of a file being written)."""
    env = os.environ if env is None else env
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        raise ConfigError("", problem, name) from None
    data, marks = parse_yaml(text, name)
    return build_config(data, marks, env, name, unread)


def parse_yaml(text: str, name: str = "<config>") -> tuple[Any, dict[Loc, str]]:
    """YAML text to plain data plus the ``file:line:col`` of every node by path."""
    loader = _BoundedLoader(text, name)
    try:
        node = loader.get_single_node()
        if loader.duplicates:
            raise ConfigErrors(_in_file_order(loader.duplicates))
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"YAML syntax error: {problem}", where) from None
    finally:
        loader.dispose()
    marks: dict[Loc, str] = {}
    if node is not None:
        _collect_marks(node, (), marks, name)
    return ({} if data is None else data), marks


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing alias expansion past ``MAX_ALIAS_NODES`` and nesting
    past ``MAX_DEPTH`` while it composes, so neither time nor memory grows first. Keys
    written twice in one mapping are gathered in ``duplicates`` (PyYAML keeps the last)."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name
        self._expanded = 0
        self._depth = 0
        self._open: set[str] = set()  # anchors of the nodes being composed
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it expands to (finished nodes)
        self._loc: list[str | int] = []  # config path of the node being composed
        self.duplicates: list[ConfigError] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                self._refuse(event, f"alias *{event.anchor} refers to itself")
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._expanded += self._size(node)
                if self._expanded > MAX_ALIAS_NODES:
                    self._refuse(
                        event,
                        f"YAML aliases expand past {MAX_ALIAS_NODES:,} values; "
                        "write the values out instead of aliasing aliases",
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._refuse(event, f"nested more than {MAX_DEPTH} levels deep")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        if parent is not None:  # index: a value's key node, an item's position, None for a key
            part = index if isinstance(index, int) else getattr(index, "value", "<key>")
            self._loc.append(part if isinstance(part, str | int) else "<key>")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if parent is not None:
                self._loc.pop()
            if anchor is not None:
                self._open.discard(anchor)

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            # Merge keys (``<<: *defaults``) are meant to be overridden; complex keys are
            # refused later (no config key is one).
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            seen = first.setdefault((key.tag, key.value), key)
            if seen is not key:
                mark = key.start_mark
                self.duplicates.append(
                    ConfigError(
                        format_path((*self._loc, key.value)),
                        f"duplicate key {key.value!r} (first at line {seen.start_mark.line + 1}); "
                        "YAML would keep only the last",
                        f"{self.name}:{mark.line + 1}:{mark.column + 1}",
                    )
                )
        return node

    def _size(self, node: yaml.Node) -> int:
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._size(item) for item in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return size

    def _refuse(self, event: yaml.Event, reason: str) -> None:
        mark = event.start_mark
        raise ConfigError("", reason, f"{self.name}:{mark.line + 1}:{mark.column + 1}")


def build_config(
    data: Any,
    marks: Mapping[Loc, str],
    env: Mapping[str, str],
    name: str = "<config>",
    unread: Collection[str] = (),
) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("", "the top level must be a mapping of sections", name)
    errors: list[ConfigError] = []
    from_env: dict[Loc, list[str]] = {}
    data = {section: value for section, value in data.items() if section not in unread}
    data = _expand_env(data, (), env, marks, errors, from_env)
    # SPENDBRAKE_BOOTSTRAP, SPENDBRAKE_KAFKA_PASSWORD...
    overrides = {} if "kafka" in unread else kafka_env_overrides(env)
    if overrides and isinstance(data.get("kafka") or {}, dict):
        data["kafka"] = {**(data.get("kafka") or {}), **overrides}
        for field, var in ((f, v) for v, f in KAFKA_ENV.items() if f in overrides):
            from_env[("kafka", field)] = [var]
    if errors:
        raise ConfigErrors(errors)
    hide = _Hider(from_env, env)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = [_to_config_error(err, marks, name, from_env) for err in exc.errors()]
        errors += _hidden_rule_beside(data, exc.errors(), marks, name)
        errors += _repeats_beside(data, exc.errors(), marks, name)
        # Each detector entry that is itself valid has its names and parameters checked
        # too, so one run of ``validate`` names every problem of the file (a misspelt
        # dimension in one entry hid another's out-of-range parameter until mended).
        errors += _check_detectors(_valid_detectors(data), marks, name)
        raise ConfigErrors([hide(e) for e in _in_file_order(errors)]) from None
    problems = [hide(p) for p in _check_detectors(enumerate(config.detectors), marks, name)]
    if problems:
        raise ConfigErrors(problems)
    return config


def _valid_detectors(data: dict[str, Any]) -> list[tuple[int, DetectorConfig]]:
    """``data``'s detector entries that are valid on their own, with their index (none when
    the section is absent: the defaults are valid)."""
    entries = data.get("detectors")
    if not isinstance(entries, list):
        return []
    valid = []
    for i, entry in enumerate(entries):
        with contextlib.suppress(ValidationError):  # named by the whole config's check
            valid.append((i, DetectorConfig.model_validate(entry)))
    return valid


def _hidden_rule_beside(
    data: dict[str, Any], failed: list[Any], marks: Mapping[Loc, str], name: str
) -> list[ConfigError]:
    """The ``keys`` rule an earlier one hides, when a problem inside the section kept pydantic
    from checking that (its model check runs only once every field and rule is valid)."""
    inside = [tuple(err["loc"]) for err in failed if err["loc"][:1] == ("keys",)]
    if not any(len(loc) > 1 for loc in inside):
        return []  # the section is valid, or is no mapping: pydantic checked or cannot
    rules = (data.get("keys") or {}).get("rules")
    if not isinstance(rules, list):
        return []
    bad = {loc[2] for loc in inside if loc[1:2] == ("rules",) and loc[3:4] == ("api_key",)}
    api_keys = [
        rule["api_key"]
        if isinstance(rule, dict) and isinstance(rule.get("api_key"), str) and j not in bad
        else None  # no usable api_key: named already
        for j, rule in enumerate(rules)
    ]
    hidden = hidden_rule(api_keys)
    if hidden is None:
        return []
    # As pydantic would have said it: the section's own check, about one rule's field.
    err = {
        "loc": ("keys",),
        "type": "value_error",
        "msg": f"Value error, {hidden}",
        "ctx": {"error": hidden},
    }
    return [_to_config_error(err, marks, name)]


def _repeats_beside(
    data: dict[str, Any], failed: list[Any], marks: Mapping[Loc, str], name: str
) -> list[ConfigError]:
    """A budget name or a dimension set used twice, when a problem inside that list kept
    pydantic from checking it (its list rule runs only once every item is valid)."""
    found = []
    for section, rule, usable in (
        ("budgets", repeated_name, _budget_name),
        ("dimensions", repeated_set, _dimension_set),
    ):
        if not any(err["loc"][:1] == (section,) and len(err["loc"]) > 1 for err in failed):
            continue  # the list is valid, or is no list: pydantic checked, or cannot
        items = data.get(section)
        repeated = rule([usable(item) for item in items]) if isinstance(items, list) else None
        if repeated is not None:
            err = {
                "loc": (section,),
                "type": "value_error",
                "msg": f"Value error, {repeated}",
                "ctx": {"error": repeated},
            }
            found.append(_to_config_error(err, marks, name))
    return found


def _budget_name(item: Any) -> str | None:
    return (
        item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else None
    )


def _dimension_set(item: Any) -> list[str] | None:
    return item if isinstance(item, list) and all(isinstance(f, str) for f in item) else None


def _in_file_order(errors: list[ConfigError]) -> list[ConfigError]:
    """By line and column where the file says so (``name:line:col``); the rest after."""

    def at(error: ConfigError) -> tuple[int, ...]:
        parts = (error.location or "").rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            return (0, int(parts[1]), int(parts[2]))
        return (1,)

    return sorted(errors, key=at)


class _Hider:
    """Takes every value read from the environment out of a message (``${VAR}`` instead)."""

    def __init__(self, from_env: Mapping[Loc, list[str]], env: Mapping[str, str]) -> None:
        names = {var for variables in from_env.values() for var in variables}
        pairs = [(env[var], var) for var in names if len(env.get(var, "")) >= _MIN_SCRUB_CHARS]
        # Longest first: a value that contains another is replaced whole.
        self._pairs = sorted(pairs, key=lambda pair: -len(pair[0]))

    def __call__(self, error: ConfigError) -> ConfigError:
        reason = error.reason
        for value, var in self._pairs:
            # As given, and as a reason quotes it with ``!r`` (a backslash or a quote in
            # the value is escaped there, and the plain value no longer matched).
            for shown in dict.fromkeys((repr(value)[1:-1], value)):
                reason = reason.replace(shown, f"${{{var}}}")
        return error if reason == error.reason else ConfigError(error.path, reason, error.location)


def _check_detectors(
    specs: Iterable[tuple[int, DetectorConfig]], marks: Mapping[Loc, str], name: str
) -> list[ConfigError]:
    """Detector names and parameters, checked by building each one (the registry's own rules).
    An entry that fails is built again with each parameter alone, so every bad one is named
    at its own line; a rule between two of them is the whole entry's."""
    problems = []

    def problem(loc: Loc, exc: ValueError, at: Loc | None = None) -> None:
        reason = str(exc)
        if isinstance(loc[-1], str) and reason.startswith(f"{loc[-1]}: "):
            reason = reason[len(loc[-1]) + 2 :]  # the path names it already
        mark = _mark_for(at or loc, marks) or name
        problems.append(ConfigError(format_path(loc), reason, mark))

    for i, spec in specs:
        whole = _build_error(spec.kind, spec.params)
        if whole is None:
            continue
        if (exc := _build_error(spec.kind, {})) is not None:
            problem(("detectors", i, "kind"), exc)
            continue
        found = len(problems)
        alone = {key: _build_error(spec.kind, {key: value}) for key, value in spec.params.items()}
        good = {key: spec.params[key] for key, exc in alone.items() if exc is None}
        for key, exc in alone.items():
            # Bad alone may be good beside the others (a rule between two parameters).
            if exc is not None and (
                exc := _build_error(spec.kind, {**good, key: spec.params[key]})
            ):
                loc: Loc = ("detectors", i, "params", key)
                unknown = str(exc).startswith("unknown parameter")
                problem(loc, exc, (*loc, "<key>") if unknown else None)
        if len(problems) == found:
            problem(("detectors", i, "params"), whole)
    return problems


def _build_error(kind: str, params: Mapping[str, Any]) -> ValueError | None:
    """Why detector ``kind`` cannot be built with ``params`` (None: it can)."""
    from spendbrake.detectors import make_detector

    try:
        make_detector(kind, **params)
    except ValueError as exc:
        return exc
    return None


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _collect_marks(node: yaml.Node, loc: Loc, marks: dict[Loc, str], name: str) -> None:
    marks[loc] = f"{name}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            # A key's own position is where an unknown-key message should point.
            marks[(*loc, key, "<key>")] = (
                f"{name}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}"
            )
            _collect_marks(value_node, (*loc, key), marks, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_marks(item, (*loc, index), marks, name)


def _expand_env(
    value: Any,
    loc: Loc,
    env: Mapping[str, str],
    marks: Mapping[Loc, str],
    errors: list[ConfigError],
    from_env: dict[Loc, list[str]],
) -> Any:
    """``value`` with ``${VAR}`` references filled in; ``from_env`` gets the location of
    every value that took one from the environment, and the variables' names."""
    if isinstance(value, dict):
        return {
            k: _expand_env(v, (*loc, k), env, marks, errors, from_env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _expand_env(v, (*loc, i), env, marks, errors, from_env) for i, v in enumerate(value)
        ]
    if isinstance(value, str) and "${" in value:

        def substitute(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if var in env:
                from_env.setdefault(loc, []).append(var)
            if var not in env and default is not None:
                return default
            if var not in env:
                errors.append(
                    ConfigError(
                        format_path(loc),
                        f"environment variable {var} is not set",
                        _mark_for(loc, marks),
                    )
                )
                return ""
            return env[var]

        return _ENV_REF.sub(substitute, value)
    return value


def _mark_for(loc: Loc, marks: Mapping[Loc, str]) -> str | None:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return marks.get(())


#: Pydantic's words for a wrong shape, in the YAML terms an operator writes.
_YAML_SHAPES = {
    "list_type": "must be a list ([a, b], or one '- item' line each)",
    "dict_type": "must be a mapping (one 'key: value' line each)",
    "model_type": "must be a mapping (one 'key: value' line each)",
}


def _to_config_error(
    err: Mapping[str, Any],
    marks: Mapping[Loc, str],
    name: str,
    from_env: Mapping[Loc, list[str]] | None = None,
) -> ConfigError:
    loc: Loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ValueAt):
        loc = (*loc, *cause.loc)  # a model's check about one of its fields
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        reason = f"unknown key {key!r}{did_you_mean(key, _known_keys(loc[:-1]))}"
        where = marks.get((*loc, "<key>")) or _mark_for(loc, marks) or name
        return ConfigError(format_path(loc), reason, where)
    message = err["msg"]
    # Pydantic puts the model's field validator errors on the field, but a
    # union or literal adds its member name to loc; drop those for the path.
    clean = tuple(
        p for p in loc if not (isinstance(p, str) and p.startswith(("literal[", "function-")))
    )
    secret = (from_env or {}).get(clean)
    if message.startswith("Value error, "):
        reason = message[len("Value error, ") :]
    else:
        reason = message.replace("Input should be", "must be").replace("Input ", "value ")
        reason = _YAML_SHAPES.get(kind, reason)
        if kind == "missing":
            reason = "is required"
        elif secret:
            # The value came from the environment: it may be a secret in the wrong field.
            reason += f", got the value of ${{{secret[0]}}} (not shown)"
        else:
            reason += f", got {show(err.get('input'))}"
    return ConfigError(format_path(clean), reason, _mark_for(clean, marks) or name)


def _known_keys(loc: Loc) -> list[str]:
    """Field names of the config model at ``loc`` (for did-you-mean hints)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _model_of(field.annotation)
    return list(model.model_fields) if model is not None else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
