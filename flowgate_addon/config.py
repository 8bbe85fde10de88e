"""FlowGate settings: YAML file -> validated, typed settings.

Every problem with a config file (bad YAML, unknown key, wrong type, missing
environment variable) becomes one `ConfigError` whose message names the file,
the line and the dotted key, so start-up can print it instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowgate_addon.paths import data_dir, default_db_path
from flowgate_addon.providers import BUILTIN_PROVIDERS
from flowgate_addon.security.redact import compile_pattern

CONFIG_ENV = "FLOWGATE_CONFIG"
TIERS = ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING")


class ConfigError(Exception):
    """A config file FlowGate cannot start with; the message is meant for humans."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7798, ge=1, le=65535)
    proxy_port: int = Field(7799, ge=1, le=65535)
    ui_port: int = Field(8001, ge=1, le=65535)
    # Seconds an upstream may send nothing (before its headers, or within a stream)
    # before FlowGate gives up on it; 0: no limit (mitmproxy's own cutoff is 600 s).
    upstream_timeout_s: float = Field(300.0, ge=0, le=590)


class DatabaseSettings(_Section):
    path: Path = Field(default_factory=default_db_path)
    batch_size: int = Field(500, ge=1, le=100_000)
    flush_interval_ms: int = Field(250, ge=1, le=60_000)
    max_backlog: int = Field(100_000, ge=1_000)


class ProviderSettings(_Section):
    base_url: str | None = None
    api: Literal["openai", "anthropic", "gemini"] = "openai"
    models: list[str] = []
    api_key: str | None = None
    stream_usage: bool = True
    openai_compatible: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://api.example.com/v1")
        return value.rstrip("/") if value else value


Tier = Literal["SIMPLE", "MEDIUM", "COMPLEX", "REASONING"]
Threshold = Literal["MEDIUM", "COMPLEX", "REASONING"]


class ComplexitySettings(_Section):
    weights: dict[str, float] = {}  # dimension -> weight; unset dimensions keep their default
    thresholds: dict[Threshold, float] = {}  # score at which a tier starts


class ClassifierSettings(_Section):
    router: Literal["mf", "bert", "random"] = "mf"
    checkpoint: Path | None = None
    thresholds: dict[Threshold, float] = {"MEDIUM": 0.3, "COMPLEX": 0.55, "REASONING": 0.8}
    timeout_ms: int = Field(300, ge=1, le=60_000)
    embeddings_provider: str = "openai"
    embedding_model: str = "text-embedding-3-small"


class SmartRouterSettings(_Section):
    enabled: bool = False
    strategy: Literal["off", "complexity", "classifier"] = "off"
    tiers: dict[Tier, str] = {}
    route_models: list[str] = []
    baseline_model: str | None = None
    complexity: ComplexitySettings = Field(default_factory=ComplexitySettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)

    @property
    def active(self) -> bool:
        return self.enabled and self.strategy != "off"

    @property
    def baseline(self) -> str | None:
        """What a routed call is priced against for `saved_usd` (default: the COMPLEX tier)."""
        return self.baseline_model or self.tiers.get("COMPLEX")


class SkillSettings(_Section):
    model: str
    description: str = ""


class LoggingSettings(_Section):
    store_prompts: bool = True
    store_responses: bool = True
    max_text_chars: int = Field(200_000, ge=0)
    level: Literal["debug", "info", "warning", "error"] = "info"
    redact_patterns: list[str] = []
    retention_days: int | None = Field(None, ge=1)  # None: keep every row
    max_db_mb: int | None = Field(None, ge=10)  # None: no size cap

    @field_validator("redact_patterns")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        for value in values:
            compile_pattern(value)  # raises ValueError, naming the pattern
        return values


class SecuritySettings(_Section):
    ip_allowlist: list[str] = []
    upstream_ca_file: Path | None = None
    vault_path: Path = Field(default_factory=lambda: data_dir() / "vault.json")
    master_key_path: Path | None = None
    allow_client_keys: bool = True
    # How long an operator-console sign-in lasts.
    admin_session_hours: float = Field(8.0, gt=0, le=720)
    # Whether every UI page (dashboards, log) needs the admin sign-in too; the console's
    # management pages always do. Default: only when the UI listens beyond loopback.
    dashboard_login: bool | None = None

    @field_validator("upstream_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"{value} is not a file")
        return value.expanduser().resolve() if value else value

    @field_validator("ip_allowlist")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
        return values


class PriceSettings(_Section):
    """USD per one million tokens."""

    input: float = Field(ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class Settings(_Section):
    # Factories, not instances: defaults such as the data folder are read at load time.
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    providers: dict[str, ProviderSettings] = {}
    smart_router: SmartRouterSettings = Field(default_factory=SmartRouterSettings)
    skills: dict[str, SkillSettings] = {}
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    pricing: dict[str, PriceSettings] = {}
    source: Path | None = Field(None, exclude=True)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use: an explicit path, else $FLOWGATE_CONFIG, else none."""
    value = explicit or os.environ.get(CONFIG_ENV)
    return Path(value).expanduser() if value else None


def console_file() -> Path:
    """Settings changed from the operator console, merged over the config file."""
    return data_dir() / "console-settings.yaml"


# The sections the console may change: the router wholesale, providers one by one.
CONSOLE_SECTIONS = ("smart_router", "providers")


def read_console_settings(path: Path | None = None) -> dict[str, Any]:
    """The console's saved sections ({} when there are none)."""
    file = path or console_file()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read console settings {file}: {exc.strerror}") from None
    data, _ = _parse_yaml(text, file)
    unknown = set(data) - set(CONSOLE_SECTIONS)
    if unknown:
        raise ConfigError(
            f"{file}: only {', '.join(CONSOLE_SECTIONS)} may be set here, "
            f"not {', '.join(sorted(unknown))}"
        )
    return data


def load_settings(
    path: str | os.PathLike[str] | None = None, console: dict[str, Any] | None = None
) -> Settings:
    """Load and validate settings; with no file, every default applies.

    The console's saved sections (`console`, else the console settings file) are
    merged over the file's: `smart_router` replaces the file's, `providers` adds to
    and replaces the file's one by one.
    """
    file = config_path(path)
    console = read_console_settings() if console is None else console
    if file is None:
        data: Any = {}
        lines: dict[tuple[str, ...], int] = {}
        source = console_file()
    else:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
        data, lines = _parse_yaml(text, file)
        source = file
    where = str(source)
    if console:
        data = {**data}
        if "smart_router" in console:
            data["smart_router"] = console["smart_router"]
        if "providers" in console:
            data["providers"] = {**(data.get("providers") or {}), **console["providers"]}
        # Keys the console set have no line in the file.
        lines = {k: v for k, v in lines.items() if not (k and k[0] in console)}
        if file is not None:
            where = f"{file} (with the console's settings from {console_file()})"
    base = file.resolve().parent if file is not None else Path.cwd()
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, lines)) from None
    _check_semantics(settings, where, base, lines)
    if file is None:
        return settings
    settings.source = file.resolve()
    settings.database.path = base / settings.database.path.expanduser()
    security = settings.security
    security.vault_path = base / security.vault_path.expanduser()
    if security.master_key_path:
        security.master_key_path = base / security.master_key_path.expanduser()
    return settings


# --- YAML with line numbers and ${ENV} references ---------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _parse_yaml(text: str, file: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}{where}: not valid YAML: {problem}") from None
    lines: dict[tuple[str, ...], int] = {}
    if root is None:
        return {}, lines
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1
        raise ConfigError(f"{file} line {line}: the top level must be a mapping of sections")
    return _to_python(root, (), file, lines), lines


def _to_python(node: yaml.Node, path: tuple[str, ...], file: Path, lines: dict) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            child = (*path, key)
            if key in result:
                raise ConfigError(
                    f"{file} line {key_node.start_mark.line + 1}: {'.'.join(child)}: duplicate key"
                )
            lines[child] = key_node.start_mark.line + 1
            result[key] = _to_python(value_node, child, file, lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, str(i)), file, lines) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, path, node.start_mark.line + 1, file)
    return value


def _scalar(node: yaml.Node) -> Any:
    """A scalar node's value with YAML's usual typing (7798 -> int, true -> bool)."""
    return yaml.SafeLoader("").construct_object(node)


def _interpolate(value: str, path: tuple[str, ...], line: int, file: Path) -> Any:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{file} line {line}: {'.'.join(path)}: environment variable {name} is not set "
            f"(set it, or write ${{{name}:-default}})"
        )

    whole = _ENV_REF.fullmatch(value)
    result = _ENV_REF.sub(replace, value)
    if whole:
        # A value that is just ${VAR} takes the YAML type of the variable's text (7798 -> int).
        try:
            return yaml.safe_load(result) if result.strip() else result
        except yaml.YAMLError:
            return result
    return result


def _describe(exc: ValidationError, where: str, lines: dict[tuple[str, ...], int]) -> str:
    messages = []
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        key = ".".join(loc) or "(top level)"
        line = _line_for(loc, lines)
        if error["type"] == "extra_forbidden":
            parent = ".".join(loc[:-1]) or "the top level"
            text = f"unknown key (not allowed in {parent})"
        elif error["type"] == "missing":
            text = "required key is missing"
        else:
            text = error["msg"]
            if "input" in error and not isinstance(error["input"], dict | list):
                text += f" (got {error['input']!r})"
        messages.append(f"{_at(where, line)}: {key}: {text}")
    return "invalid config:\n  " + "\n  ".join(messages)


def _line_for(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    """The line a key was written on; None for keys that came from elsewhere (the console)."""
    if not lines:
        return None
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _at(where: str, line: int | None) -> str:
    return f"{where} line {line}" if line is not None else where


def _check_semantics(
    settings: Settings, where: str, base: Path, lines: dict[tuple[str, ...], int]
) -> None:
    def fail(loc: tuple[str, ...], message: str) -> None:
        raise ConfigError(f"{_at(where, _line_for(loc, lines))}: {'.'.join(loc)}: {message}")

    router = settings.smart_router
    if router.active:
        missing = [tier for tier in TIERS if tier not in router.tiers]
        if missing:
            fail(
                ("smart_router", "tiers"),
                f"strategy {router.strategy!r} needs a model for every tier; "
                f"missing: {', '.join(missing)}",
            )
    from flowgate_addon.routing.router import scorer_for

    try:
        scorer_for(router)
    except ValueError as exc:  # "weights.code: must be …": relative to smart_router.complexity
        key, _, message = str(exc).partition(": ")
        fail(("smart_router", "complexity", *key.split(".")), message)
    if router.strategy == "classifier":
        from flowgate_addon.routing import classifier

        options = router.classifier
        if options.checkpoint is not None:
            options.checkpoint = (base / options.checkpoint.expanduser()).resolve()
        try:
            options.thresholds = classifier.validate(
                options.router, options.checkpoint, options.thresholds
            )
        except ValueError as exc:  # "smart_router.classifier.checkpoint: … does not exist"
            key, _, message = str(exc).partition(": ")
            fail(tuple(key.split(".")), message)
    for name, provider in settings.providers.items():
        if name not in BUILTIN_PROVIDERS and not provider.base_url:
            fail(("providers", name, "base_url"), "a custom provider needs a base_url")
