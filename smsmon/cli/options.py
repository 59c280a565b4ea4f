"""Options shared by several commands, declared once: the database and config file, the
listener's, `--json`, `--filter`; and the parameter types that turn a mistake on the command
line into click's usage error (exit 2) instead of a failure later."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from smsmon.config import Address

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class AddressType(click.ParamType):
    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Address:
        if isinstance(value, Address):
            return value
        try:
            return Address.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class NetworkType(click.ParamType):
    name = "CIDR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from smsmon.errors import ListenerError
        from smsmon.ingest.proxy import parse_networks

        try:
            return parse_networks([str(value)], param.opts[0] if param and param.opts else "--allow-from")[0]
        except ListenerError as exc:
            self.fail(str(exc), param, ctx)


class FilterType(click.ParamType):
    """A filter expression, parsed now (relative times count from the moment the command starts)."""

    name = "FILTER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from smsmon import filters
        from smsmon.errors import FilterError
        from smsmon.timeutil import now_utc

        if not isinstance(value, str):
            return value
        try:
            return filters.parse(value, now_utc())
        except FilterError as exc:
            self.fail(str(exc), param, ctx)


class ZoneType(click.ParamType):
    name = "ZONE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from smsmon.timeutil import zone

        try:
            return zone(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DatabaseType(click.ParamType):
    """An SQLite file path or a postgresql:// URL, kept as typed: a URL never becomes a path
    (click.Path would turn `postgresql://u@h/db` into the folder `postgresql:`)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from smsmon import database

        try:
            return database.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


ADDRESS, NETWORK, FILTER, ZONE, DATABASE = AddressType(), NetworkType(), FilterType(), ZoneType(), DatabaseType()


_SETTINGS_OPTIONS = [
    click.option("--db", "db", type=DATABASE, default=None,
                 help="SQLite file or postgresql://USER@HOST/DB URL [env SMSMON_DB; default: a file in the user data dir]."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="TOML config file [env SMSMON_CONFIG; default: the user config dir]."),
]
_LISTENER_OPTIONS = [
    click.option("--listen", type=ADDRESS, default=None, help="Where to listen [setting listen; default 127.0.0.1:8787]."),
    click.option("--token", default=None, help="Callback token [env SMSMON_CALLBACK_TOKEN, which keeps it out of `ps`]."),
    click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="HTTPS certificate (PEM)."),
    click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="HTTPS private key (PEM)."),
    click.option("--allow-from", type=NETWORK, multiple=True, help="Only these addresses may call (repeatable); others get 403."),
    click.option("--insecure", is_flag=True, help="Allow a non-loopback address without a token."),
    click.option("--public-url", default=None, metavar="URL",
                 help="Where Zeckta reaches this listener (a proxy or tunnel), shown as the callback URL [setting public_url]."),
    click.option("--trust-proxy", type=NETWORK, multiple=True,
                 help="Believe X-Forwarded-For/-Proto from these proxies only (repeatable) [setting listener.trust_proxy]."),
    click.option("--forward-to", default=None, metavar="URL",
                 help="Relay every new callback to your app at URL, at least once [setting forward.url]."),
]


DEMO_DB_HELP = ("SQLite database: a new or empty file, or one an earlier demo made [default: a fresh temporary one, "
                "deleted on exit; SMSMON_DB and the config file's db are not used].")


def settings_options(*, listener: bool = False, db_help: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--db and --config (and with `listener`, the callback listener's options); the command
    receives `settings` (smsmon.config.Settings) and, with `listener`, a checked ListenerConfig.
    `db_help` replaces --db's help (the demo's database is chosen otherwise: DEMO_DB_HELP)."""
    options = list(_SETTINGS_OPTIONS)
    if db_help is not None:
        options[0] = click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path), default=None, help=db_help)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(*args: Any, db: Any, config_file: Path | None, **kwargs: Any) -> Any:
            from smsmon import config

            flags: dict[str, Any] = {"db": db}
            if listener:
                flags.update({"listen": kwargs.pop("listen"), "listener.token": kwargs.pop("token"),
                              "public_url": kwargs.pop("public_url"), "forward.url": kwargs.pop("forward_to"),
                              "listener.trust_proxy": kwargs.pop("trust_proxy") or None})
                network = {k: kwargs.pop(k) for k in ("tls_cert", "tls_key", "allow_from", "insecure")}
            settings = config.load(config_file, flags=flags)
            if listener:
                kwargs["listener"] = listener_config(settings, **network)
            return f(*args, settings=settings, **kwargs)

        for option in reversed(options + (_LISTENER_OPTIONS if listener else [])):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def listener_config(settings: Settings, *, tls_cert: Path | None = None, tls_key: Path | None = None,
                    allow_from: tuple[Any, ...] = (), insecure: bool = False) -> Any:
    from smsmon.ingest.listener import ListenerConfig

    config = ListenerConfig(host=settings.listen.host, port=settings.listen.port, token=settings.listener.token,
                            allow_from=list(allow_from), tls_cert=tls_cert, tls_key=tls_key, insecure=insecure,
                            region=settings.default_region, public_url=settings.public_url,
                            trust_proxy=list(settings.listener.trust_proxy or ()))
    config.check()
    return config


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")(f)


def filter_option(help: str = "A filter, as in the app: status:, provider:, since:2h, ...") -> Callable[..., Any]:
    return click.option("--filter", "-f", "flt", type=FILTER, default="", help=help)
