"""Settings, in one place: defaults < config file (TOML) < environment < command-line flags.

`load()` builds one frozen, typed `Settings`, and everything else reads attributes of it
(`settings.eazita.interval` is a timedelta, `settings.listen` an Address). A setting's path
in the object is its key in the TOML file: `eazita.timezone` is `[eazita] timezone = ...`.
Each is declared once below, with its environment variable, default and help; `smsmon
config` shows them all with where each value came from. Secrets are `Secret`s, which never
print their value: `secret.reveal()` is the one way to get it. A secret is checked as it is
loaded: no control characters (a stray carriage return would otherwise end up quoted in an
HTTP library's error), and a warning when it is too short to be masked without garbling
every line that happens to contain it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import platformdirs

from smsmon import database
from smsmon.config_values import Address, Secret, SecretUrl
from smsmon.database import Database, PostgresUrl
from smsmon.errors import ConfigError
from smsmon.defaults import EAZITA_TIMEZONE as DEFAULT_TIMEZONE
from smsmon.defaults import WATCH_WINDOW
from smsmon.timeutil import DisplayZone, parse_duration, zone

DEFAULT_LISTEN = "127.0.0.1:8787"
MIN_SECRET = 6  # shorter secrets are accepted with a warning: masking "k" masks every k in every log line

log = logging.getLogger("smsmon.config")


def default_db() -> Path:
    return Path(platformdirs.user_data_dir("smsmon")) / "smsmon.db"


def default_config() -> Path:
    return Path(platformdirs.user_config_dir("smsmon")) / "config.toml"


# ── parsers of raw values (TOML values or environment strings) ──────────────────
def _text(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return str(value).strip()


def _check_secret(text: str) -> str:
    """No control or invisible format characters (the error says where, never what the secret is)."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            raise ValueError(f"contains a control character (U+{ord(ch):04X}, character {i + 1} of {len(text)});"
                             " copy the secret again without it")
    return text


def _secret(value: Any) -> Secret:
    return Secret(_check_secret(_text(value)))


def _header_secret(value: Any) -> Secret:
    """A secret sent in an HTTP header: printable ASCII only."""
    text = _check_secret(_text(value))
    if not text.isascii() or not text.isprintable():
        raise ValueError("has characters an HTTP header cannot carry (only printable ASCII can be sent)")
    return Secret(text)


def _token(value: Any) -> Secret:
    """The callback token: one segment of a URL path."""
    text = _check_secret(_text(value))
    if bad := sorted({ch for ch in text if ch in "/?#% " or ch.isspace()}):
        raise ValueError(f"cannot be part of a URL path: it contains {' '.join(repr(c) for c in bad)}"
                         " (use letters, digits, - and _, e.g. `openssl rand -hex 16`)")
    return Secret(text)


def _duration(value: Any) -> timedelta:
    return parse_duration(_text(value))


def _zone(value: Any) -> ZoneInfo:
    return zone(_text(value))


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _database(value: Any) -> Database:
    """An SQLite file path, or a postgresql:// URL (never taken for a file name)."""
    return database.parse(_text(value))


def _url(value: Any) -> str:
    text = _text(value).rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def _public_url(value: Any) -> str:
    """The URL the listener is reachable at from outside (behind a proxy or tunnel): a base, no query."""
    text = _url(value)
    u = urlsplit(text)
    if u.query or u.fragment or u.username or not u.hostname:
        raise ValueError(f"{text!r} must be a plain base URL such as https://sms.example.com (no query, user or #)")
    return text


def _forward_url(value: Any) -> SecretUrl:
    """A URL that may hold a credential anywhere after its host: an error names only its scheme,
    host or port, never the rest."""
    text = _text(value).rstrip("/")
    u = urlsplit(text)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"the scheme {u.scheme[:10]!r} is not http or https" if u.scheme else "is not an http:// or https:// URL")
    if not u.hostname:
        raise ValueError("has no host name")
    try:
        u.port
    except ValueError:
        raise ValueError(f"the port of {u.hostname[:100]!r} is not a number from 1 to 65535") from None
    return SecretUrl(_check_secret(text))


def _networks(value: Any) -> tuple[Any, ...]:
    """CIDR ranges or addresses: comma-separated text, or a list."""
    items = value if isinstance(value, (list, tuple)) else _text(value).split(",")
    try:
        return tuple(v if not isinstance(v, str) else ipaddress.ip_network(v.strip(), strict=False)
                     for v in items if not isinstance(v, str) or v.strip())
    except ValueError as exc:
        raise ValueError(f"{exc} (use addresses or CIDR ranges such as 127.0.0.1 or 10.0.0.0/8)") from None


def _address(value: Any) -> Address:
    return Address.parse(_text(value))


def _region(value: Any) -> str:
    text = _text(value).upper()
    if len(text) != 2 or not text.isalpha():
        raise ValueError(f"{text!r} is not a region: use a two-letter country code such as GH or PK")
    from phonenumbers import SUPPORTED_REGIONS

    if text not in SUPPORTED_REGIONS:
        raise ValueError(f"{text!r} is not a country code phone numbers are known for")
    return text


def _display_zone(value: Any) -> DisplayZone:
    return DisplayZone.parse(_text(value))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{value!r} is not a whole number (0, 1, 2, ...)")
    return int(str(value).strip())


def _fraction(value: Any) -> float:
    """A share: `0.95`, or `95%`."""
    text = _text(value)
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a share: use e.g. 0.95 or 95%") from None
    if not 0 < share <= 1:
        raise ValueError(f"{text!r} is not a share between 0 and 1 (or 0% and 100%)")
    return share


def _switch(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
        raise ValueError(f"{text!r} is not on or off")
    return text in ("on", "true", "yes", "1")


def _webhook(value: Any) -> SecretUrl:
    """A URL that may hold a secret (a Slack or Teams hook does, in its path): shown as its
    origin, masked in every part, and never in an error (as forward.url)."""
    return _forward_url(value)


def _setting(default: str | None, env: str | None, help: str, parse: Callable[[Any], Any] = _text, *,
             secret: bool = False) -> Any:
    """A field of a settings class: its default as text (parsed here), environment variable and help."""
    return field(default=None if default is None else parse(default),
                 metadata={"env": env, "help": help, "parse": parse, "default": default, "secret": secret})


@dataclass(frozen=True)
class ListenerSettings:
    token: Secret | None = _setting(None, "SMSMON_CALLBACK_TOKEN",
                                    "secret path segment callbacks must carry: POST /callbacks/zeckta/<token>", _token,
                                    secret=True)
    trust_proxy: tuple[Any, ...] | None = _setting(
        None, "SMSMON_TRUST_PROXY", "proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed", _networks)


@dataclass(frozen=True)
class EazitaSettings:
    api_key: Secret | None = _setting(None, "SMSMON_EAZITA_API_KEY", "Eazita API key", _secret, secret=True)
    password: Secret | None = _setting(None, "SMSMON_EAZITA_PASSWORD", "Eazita account password", _secret, secret=True)
    url: str = _setting("https://api.eazita.com", "SMSMON_EAZITA_URL", "Eazita API base URL", _url)
    timezone: ZoneInfo = _setting(DEFAULT_TIMEZONE, "SMSMON_EAZITA_TIMEZONE",
                                  "zone of Eazita's sent_date/done_date (they carry none)", _zone)
    interval: timedelta = _setting("30s", "SMSMON_EAZITA_INTERVAL", "how often to poll Eazita", _duration)
    timeout: timedelta = _setting("60s", "SMSMON_EAZITA_TIMEOUT",
                                  "how long to wait for Eazita's answer (its recent log can be slow)", _duration)

    @property
    def configured(self) -> bool:
        return bool(self.api_key and self.password)


@dataclass(frozen=True)
class ZecktaSettings:
    api_key: Secret | None = _setting(None, "SMSMON_ZECKTA_API_KEY", "Zeckta API key (Status API)", _header_secret,
                                      secret=True)
    url: str = _setting("https://api.zeckta.com", "SMSMON_ZECKTA_URL", "Zeckta API base URL", _url)
    status_after: timedelta = _setting("10m", "SMSMON_ZECKTA_STATUS_AFTER",
                                       "ask the Status API about a non-final Zeckta message silent for this long", _duration)
    interval: timedelta = _setting("60s", "SMSMON_ZECKTA_INTERVAL", "how often to look for such messages", _duration)
    timeout: timedelta = _setting("20s", "SMSMON_ZECKTA_TIMEOUT", "how long to wait for the Status API", _duration)

    @property
    def configured(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True)
class AlertsSettings:
    """Alert rules (issue 14): each is off until its threshold is set. See smsmon.alerts."""

    delivery_rate_below: float | None = _setting(
        None, "SMSMON_ALERTS_DELIVERY_RATE_BELOW",
        "alert when the share delivered of the messages finished in the window is below this (0.9 or 90%)", _fraction)
    window: timedelta = _setting("15m", "SMSMON_ALERTS_WINDOW", "the time the rate and failure rules look back over",
                                 _duration)
    min_messages: int = _setting("20", "SMSMON_ALERTS_MIN_MESSAGES",
                                 "the delivery rate is judged only over at least this many finished messages", _count)
    code_failures_above: int | None = _setting(
        None, "SMSMON_ALERTS_CODE_FAILURES_ABOVE",
        "alert when more messages than this failed in the window with one error code, or on one network", _count)
    stale_above: int | None = _setting(None, "SMSMON_ALERTS_STALE_ABOVE",
                                       "alert when more messages than this are stale (see watch_window)", _count)
    silence_after: timedelta | None = _setting(
        None, "SMSMON_ALERTS_SILENCE_AFTER", "alert when no callback has arrived for this long (the listener may be "
        "unreachable)", _duration)
    poll_failures: int | None = _setting(None, "SMSMON_ALERTS_POLL_FAILURES",
                                         "alert when a poller has failed this many polls in a row", _count)
    webhook: Secret | None = _setting(None, "SMSMON_ALERTS_WEBHOOK",
                                      "POST each alert (and its clearing) as JSON here; retried; masked like a secret",
                                      _webhook, secret=True)
    command: str | None = _setting(None, "SMSMON_ALERTS_COMMAND",
                                   "run this command with each alert's JSON on its standard input", _text)


@dataclass(frozen=True)
class ForwardSettings:
    url: SecretUrl | None = _setting(None, "SMSMON_FORWARD_URL", "relay every new callback to this URL (your app), "
                                     "at least once", _forward_url, secret=True)
    timeout: timedelta = _setting("10s", "SMSMON_FORWARD_TIMEOUT", "how long one relayed request may take", _duration)


@dataclass(frozen=True)
class Settings:
    db: Database = _setting(None, "SMSMON_DB", "the database: an SQLite file (default: in the user data dir) or a"
                            " postgresql:// URL (its password masked wherever it is shown)", _database)
    listen: Address = _setting(DEFAULT_LISTEN, "SMSMON_LISTEN", "address the callback listener binds", _address)
    watch_window: timedelta = _setting(f"{WATCH_WINDOW.total_seconds() / 3600:g}h", "SMSMON_WATCH_WINDOW", "a non-final message with no event for this long is stale",
                                       _duration)
    display_timezone: DisplayZone = _setting("UTC", "SMSMON_DISPLAY_TIMEZONE",
                                             "the zone times are shown in: UTC, local, or a name such as Africa/Accra "
                                             "(--json and exports stay UTC)", _display_zone)
    default_region: str | None = _setting(None, "SMSMON_DEFAULT_REGION",
                                          "country whose local format phone numbers are read in (e.g. GH): "
                                          "0241234567 is then +233241234567", _region)
    retention: timedelta | None = _setting(None, "SMSMON_RETENTION",
                                           "serve and watch remove messages silent for longer than this (e.g. 90d), "
                                           "as `smsmon prune --older-than` does", _duration)
    metrics: bool = _setting("on", "SMSMON_METRICS", "serve Prometheus metrics at GET /metrics on the listener", _switch)
    public_url: str | None = _setting(None, "SMSMON_PUBLIC_URL", "the listener's URL as Zeckta reaches it (behind a "
                                      "proxy or tunnel), shown wherever the callback URL is", _public_url)
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    eazita: EazitaSettings = field(default_factory=EazitaSettings)
    zeckta: ZecktaSettings = field(default_factory=ZecktaSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    # TOML key -> where its value came from: "default", "file PATH", "env NAME", "flag", ...
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.db is None:
            object.__setattr__(self, "db", default_db())

    @property
    def secrets(self) -> list[str]:
        """Every configured secret, revealed: what a Redactor must mask."""
        secrets = [part for spec, value in _values(self) if spec.secret and value is not None for part in value.parts()]
        return secrets + list(self.db.passwords if isinstance(self.db, PostgresUrl) else ())

    @property
    def warnings(self) -> list[str]:
        """Settings that work but should change: secrets too short to mask cleanly."""
        return [f"{spec.key} ({self.sources.get(spec.key, 'default')}) is shorter than {MIN_SECRET} characters:"
                " smsmon masks it wherever it appears, so log lines and errors that happen to contain those"
                " characters will be garbled; a longer secret avoids it"
                for spec, value in _values(self) if spec.secret and value is not None and 0 < len(value) < MIN_SECRET]

    def get(self, key: str) -> Any:
        """A setting by its TOML key (`eazita.interval`)."""
        obj: Any = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj

    def override(self, values: Mapping[str, Any], source: str) -> "Settings":
        """A copy with some settings (by TOML key, raw values) replaced, their source named."""
        raw = {k: self.get(k) for k in SPECS}
        sources = dict(self.sources)
        for key, value in values.items():
            if key not in SPECS:
                raise KeyError(key)
            raw[key] = value
            sources[key] = source
        return _build(raw, sources)

    def shown(self) -> list[tuple[str, str, str]]:
        """(TOML key, value with secrets masked, source), for display."""
        out = []
        for spec, value in _values(self):
            text = "(not set)" if value is None else value.masked() if isinstance(value, Secret) else _display(value)
            out.append((spec.key, text, self.sources.get(spec.key, "default")))
        return out


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"{seconds / size:g}{unit}"
        return f"{seconds:g}s"
    if isinstance(value, ZoneInfo):
        return value.key
    if type(value) is tuple:  # networks (an Address is a tuple too, and shows itself)
        return ", ".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class Spec:
    """One setting, as declared on its settings class."""

    key: str  # TOML key, dotted; also its path in Settings
    env: str | None
    default: str | None
    help: str
    parse: Callable[[Any], Any]
    secret: bool


def _specs(cls: type, prefix: str = "") -> Iterator[Spec]:
    for f in dataclasses.fields(cls):
        if "parse" in f.metadata:
            m = f.metadata
            yield Spec(prefix + f.name, m["env"], m["default"], m["help"], m["parse"], m["secret"])
        elif dataclasses.is_dataclass(f.default_factory):  # a section
            yield from _specs(f.default_factory, prefix + f.name + ".")  # type: ignore[arg-type]


SPECS: dict[str, Spec] = {s.key: s for s in _specs(Settings)}


def _values(settings: Settings) -> Iterator[tuple[Spec, Any]]:
    for spec in SPECS.values():
        yield spec, settings.get(spec.key)


def _build(raw: Mapping[str, Any], sources: dict[str, str]) -> Settings:
    """Parse raw values (already-parsed ones pass through) into Settings. ConfigError names the
    setting and where its value came from."""
    parsed: dict[str, Any] = {}
    for key, spec in SPECS.items():
        value = raw.get(key)
        if value is None or isinstance(value, (Secret, timedelta, ZoneInfo, Address, Path, PostgresUrl, DisplayZone)):
            parsed[key] = value
            continue
        try:
            parsed[key] = spec.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{key} ({sources.get(key, 'default')}): {exc}") from None
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in parsed.items():
        section, dot, name = key.partition(".")
        if dot:
            sections.setdefault(section, {})[name] = value
        else:
            top[key] = value
    section_types = {f.name: f.default_factory for f in dataclasses.fields(Settings) if dataclasses.is_dataclass(f.default_factory)}
    for name, values in sections.items():
        top[name] = section_types[name](**values)  # type: ignore[misc, operator]
    return Settings(**top, sources=sources)


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
    """Read settings. A config file named explicitly (argument or SMSMON_CONFIG) must exist; the
    default one is optional. `flags` are by TOML key; a None flag is not given."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {key: spec.default for key, spec in SPECS.items()}
    sources = {key: "default" for key in SPECS}
    explicit = config_file is not None or bool(env.get("SMSMON_CONFIG"))
    path = Path(config_file or env.get("SMSMON_CONFIG") or default_config()).expanduser()
    if path.exists() or explicit:
        import tomllib  # only with a file to read

        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in _flatten(data).items():
            if key not in SPECS:
                raise ConfigError(f"config file {path}: unknown setting {key!r} (known: {', '.join(SPECS)})")
            raw[key], sources[key] = value, f"file {path}"
    for key, spec in SPECS.items():
        if spec.env and env.get(spec.env):
            raw[key], sources[key] = env[spec.env], f"env {spec.env}"
    for key, value in (flags or {}).items():
        if key not in SPECS:
            raise KeyError(key)  # a bug in the caller, not a user error
        if value is not None:
            raw[key], sources[key] = value, "flag"
    settings = _build(raw, sources)
    for warning in settings.warnings:
        log.warning("warning: %s", warning)
    return settings
