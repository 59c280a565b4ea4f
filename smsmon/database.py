"""What `--db` (`SMSMON_DB`, `db`) names: an SQLite file, by its path (the default), or a
PostgreSQL database, by a `postgresql://` (or `postgres://`) URL. Pure: no I/O.

A URL is never taken for a file name, and anything else that looks like a URL (`mysql://…`,
`postgresql+psycopg://…`, `postgres:host`) is refused with what to write instead: a path
cannot start with a URL scheme by accident. The password in a URL is a secret: `str()` masks
it (`postgresql://smsmon:****@db.internal/smsmon`), and `reveal()` is the one way to the URL
itself, for the driver.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
MASK = "****"
_LOOKS_LIKE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_POSTGRES_PREFIX = re.compile(r"^postgres(ql)?(\+[A-Za-z0-9]+)?:", re.IGNORECASE)
_SECRET_PARAMS = ("password", "sslpassword")


class PostgresUrl:
    """A PostgreSQL connection URL. str() and repr() mask its password; `reveal()` gives it whole."""

    __slots__ = ("_url", "_shown", "passwords")

    def __init__(self, text: str) -> None:
        """Raises ValueError, with a message that never holds the password."""
        text = text.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 -- a port that is not a number raises here
        except ValueError as exc:
            raise ValueError(f"{_mask(text)} is not a PostgreSQL URL: {exc}") from None
        if parts.scheme.lower() not in SCHEMES:
            raise ValueError(f"{_mask(text)} is not a postgresql:// URL")
        if parts.fragment:
            raise ValueError(f"{_mask(text)}: a PostgreSQL URL has no #fragment")
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.passwords = tuple(p for p in ([unquote(parts.password)] if parts.password else [])
                               + [v for k, v in query if k in _SECRET_PARAMS] if p)
        self._url = text
        self._shown = _mask(text)

    def reveal(self) -> str:
        """The URL as given, password and all: only for the driver."""
        return self._url

    @property
    def database(self) -> str:
        """The database's name as the URL gives it ('' when libpq's default applies)."""
        return unquote(urlsplit(self._url).path.lstrip("/"))

    @property
    def name(self) -> str:
        """A short name, where a file's name would be shown: `smsmon@db.internal`."""
        parts = urlsplit(self._url)
        host = parts.hostname or dict(parse_qsl(parts.query)).get("host", "") or "localhost"
        return f"{self.database or 'postgres'}@{host.rsplit('/', 1)[-1] if host.startswith('/') else host}"

    def __str__(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"PostgresUrl({self._shown!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PostgresUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def _mask(text: str) -> str:
    """The URL with the password in its user part and in its parameters replaced by ****."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return re.sub(r"(://[^:/?#@]*:)[^@/?#]*@", rf"\1{MASK}@", text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else netloc
    query = parts.query
    if any(k in _SECRET_PARAMS for k, _ in parse_qsl(query, keep_blank_values=True)):
        query = urlencode([(k, MASK if k in _SECRET_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)],
                          safe="/*", quote_via=quote)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


Database = Path | PostgresUrl


def parse(value: str | Path) -> Database:
    """A path (SQLite) or a postgresql:// URL. Raises ValueError for anything that looks like
    another kind of URL, never a folder named after one."""
    if isinstance(value, (Path, PostgresUrl)):
        return value
    text = str(value).strip()
    if not text:
        raise ValueError("is empty: give an SQLite file path or a postgresql:// URL")
    scheme = text.split(":", 1)[0].lower()
    if scheme in SCHEMES and text[len(scheme):].startswith("://"):
        return PostgresUrl(text)
    if _POSTGRES_PREFIX.match(text):
        shown = _mask(text) if "://" in text else text.split(":", 1)[0] + ":…"  # no // : where a password ends is unclear
        raise ValueError(f"{shown} is not a URL smsmon can use: write postgresql://USER@HOST/DATABASE"
                         " (no driver suffix such as +psycopg; two slashes after the colon)")
    if _LOOKS_LIKE_URL.match(text):
        raise ValueError(f"{_mask(text)} is a URL smsmon cannot use: give an SQLite file path or a postgresql:// URL")
    return Path(text).expanduser()


def is_postgres(db: object) -> bool:
    return isinstance(db, PostgresUrl)
