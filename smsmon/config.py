"""Settings, in one place: defaults < config file (TOML) < environment < command-line flags.

Each setting has a docstring-like `help`; `Settings.sources` says where each value came from.
Secrets (API keys, passwords, the callback token) are masked whenever settings are shown.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import platformdirs

from smsmon.errors import SmsmonError
from smsmon.timeutil import parse_duration, zone


class ConfigError(SmsmonError):
    pass


def default_db() -> Path:
    return Path(platformdirs.user_data_dir("smsmon")) / "smsmon.db"


def default_config() -> Path:
    return Path(platformdirs.user_config_dir("smsmon")) / "config.toml"


@dataclass(frozen=True)
class Setting:
    name: str  # attribute name, and the dotted key in the TOML file with "_" -> "." for the first part
    toml: str
    env: str | None
    default: Any
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "db", "SMSMON_DB", None, "SQLite database file (default: the user data dir)"),
    Setting("listen", "listen", "SMSMON_LISTEN", "127.0.0.1:8787", "address the callback listener binds"),
    Setting("callback_token", "listener.token", "SMSMON_CALLBACK_TOKEN", None,
            "secret path segment callbacks must carry: POST /callbacks/zeckta/<token>", secret=True),
    Setting("watch_window", "watch_window", "SMSMON_WATCH_WINDOW", "72h",
            "a non-final message with no event for this long is stale"),
    Setting("eazita_api_key", "eazita.api_key", "SMSMON_EAZITA_API_KEY", None, "Eazita API key", secret=True),
    Setting("eazita_password", "eazita.password", "SMSMON_EAZITA_PASSWORD", None, "Eazita account password", secret=True),
    Setting("eazita_url", "eazita.url", "SMSMON_EAZITA_URL", "https://api.eazita.com", "Eazita API base URL"),
    Setting("eazita_timezone", "eazita.timezone", "SMSMON_EAZITA_TIMEZONE", "Asia/Karachi",
            "zone of Eazita's sent_date/done_date (they carry none)"),
    Setting("eazita_interval", "eazita.interval", "SMSMON_EAZITA_INTERVAL", "30s", "how often to poll Eazita"),
    Setting("eazita_timeout", "eazita.timeout", "SMSMON_EAZITA_TIMEOUT", "60s",
            "how long to wait for Eazita's answer (its recent log can be slow)"),
    Setting("zeckta_api_key", "zeckta.api_key", "SMSMON_ZECKTA_API_KEY", None, "Zeckta API key (Status API)", secret=True),
    Setting("zeckta_url", "zeckta.url", "SMSMON_ZECKTA_URL", "https://api.zeckta.com", "Zeckta API base URL"),
    Setting("zeckta_status_after", "zeckta.status_after", "SMSMON_ZECKTA_STATUS_AFTER", "10m",
            "ask the Status API about a non-final Zeckta message silent for this long"),
    Setting("zeckta_interval", "zeckta.interval", "SMSMON_ZECKTA_INTERVAL", "60s",
            "how often to look for such messages"),
    Setting("zeckta_timeout", "zeckta.timeout", "SMSMON_ZECKTA_TIMEOUT", "20s", "how long to wait for the Status API"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class Settings:
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def db_path(self) -> Path:
        return Path(self.values["db"]).expanduser() if self.values.get("db") else default_db()

    @property
    def window(self) -> timedelta:
        return parse_duration(self.values["watch_window"])

    @property
    def tz(self):  # type: ignore[no-untyped-def]
        return zone(self.values["eazita_timezone"])

    def seconds(self, name: str) -> float:
        return parse_duration(str(self.values[name])).total_seconds()

    @property
    def secrets(self) -> list[str]:
        return [str(self.values[s.name]) for s in SETTINGS if s.secret and self.values.get(s.name)]

    @property
    def eazita_configured(self) -> bool:
        return bool(self.values.get("eazita_api_key") and self.values.get("eazita_password"))

    @property
    def zeckta_configured(self) -> bool:
        return bool(self.values.get("zeckta_api_key"))

    def shown(self) -> list[tuple[str, str, str]]:
        """(name, value with secrets masked, source) for display."""
        out = []
        for s in SETTINGS:
            v = self.values.get(s.name)
            text = "(not set)" if v is None else mask(str(v)) if s.secret else str(v)
            if s.name == "db" and v is None:
                text = str(default_db())
            out.append((s.toml, text, self.sources.get(s.name, "default")))
        return out


def mask(secret: str) -> str:
    return "****" if len(secret) < 12 else secret[:2] + "****" + secret[-2:]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load(config_file: str | Path | None = None, *, env: Mapping[str, str] | None = None,
         flags: Mapping[str, Any] | None = None) -> Settings:
    """Read settings. A config file named explicitly must exist; the default one is optional."""
    env = os.environ if env is None else env
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    explicit = config_file is not None or bool(env.get("SMSMON_CONFIG"))
    path = Path(config_file or env.get("SMSMON_CONFIG") or default_config()).expanduser()
    if path.exists() or explicit:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        by_toml = {s.toml: s for s in SETTINGS}
        for key, value in _flatten(data).items():
            if key not in by_toml:
                raise ConfigError(f"config file {path}: unknown setting {key!r} (known: {', '.join(by_toml)})")
            values[by_toml[key].name] = value
            sources[by_toml[key].name] = f"file {path}"
    for s in SETTINGS:
        if s.env and env.get(s.env):
            values[s.name] = env[s.env]
            sources[s.name] = f"env {s.env}"
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
            sources[name] = "flag"
    settings = Settings(values, sources)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    for name in ("watch_window", "eazita_interval", "eazita_timeout", "zeckta_status_after", "zeckta_interval", "zeckta_timeout"):
        try:
            parse_duration(str(settings.values[name]))
        except ValueError as exc:
            raise ConfigError(f"{_BY_NAME[name].toml} ({settings.sources[name]}): {exc}") from None
    try:
        zone(str(settings.values["eazita_timezone"]))
    except ValueError as exc:
        raise ConfigError(f"eazita.timezone ({settings.sources['eazita_timezone']}): {exc}") from None


