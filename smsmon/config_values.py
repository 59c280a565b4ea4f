"""The types of settings' values (smsmon.config builds them): `Secret`, which never prints its
value, `SecretUrl`, a URL that may carry one, and `Address`, a HOST:PORT to bind."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple
from urllib.parse import urlsplit


class Secret:
    """A credential. str() and repr() never show it; `reveal()` does, for the one place that sends it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        """For showing that a secret is set, and nothing of it but its length: `<32 characters>`."""
        return f"<{len(self._value)} characters>"

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._value)

    def parts(self) -> list[str]:
        """What a Redactor must mask so that no part of it shows."""
        return [self._value]

    def __eq__(self, other: object) -> bool:
        from hmac import compare_digest  # here: hmac loads OpenSSL, and start-up compares no secret

        return isinstance(other, Secret) and compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


class SecretUrl(Secret):
    """A URL that may carry a credential in its path, query or user part (a forward target such
    as https://app.example/hooks/<token>): shown as its origin only, masked in every part."""

    __slots__ = ()

    def masked(self) -> str:
        u = urlsplit(self._value)
        return f"{u.scheme}://{u.hostname or ''}{f':{u.port}' if u.port else ''}/…"

    def parts(self) -> list[str]:
        """The URL, and each part of it that may hold the credential (never the host alone, so
        that an error can still say which host it could not reach)."""
        u = urlsplit(self._value)
        rest = self._value.split(u.netloc, 1)[-1]
        secret = len(rest) > 1 or bool(u.password)
        return [p for p in (self._value, self._value.split("://", 1)[-1] if secret else "", u.netloc if u.password else "",
                            u.password, rest if len(rest) > 1 else "", u.path if len(u.path) > 1 else "", u.query) if p]


class Address(NamedTuple):
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Address":
        """`127.0.0.1:8787`, `[::1]:8787`, `localhost:0`. Raises ValueError."""
        host, sep, port = str(text).strip().rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8787)")
        return cls(host.strip("[]") or "127.0.0.1", int(port))

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
