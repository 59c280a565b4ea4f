"""The settings issue 13 adds: public_url, listener.trust_proxy, forward.url, forward.timeout."""

from __future__ import annotations

import ipaddress
import os

import pytest

from smsmon import config
from smsmon.errors import ConfigError
from smsmon.redact import Redactor


def load(**env: str) -> config.Settings:
    return config.load(env=env, config_file=os.devnull)


def test_the_forward_url_shows_its_origin_only_and_is_masked_in_every_part() -> None:
    s = load(SMSMON_FORWARD_URL="https://user:pa55word@app.example:8443/hooks/sms/s3cr3t-path?key=k3y-value")
    shown = dict((k, v) for k, v, _ in s.shown())
    assert shown["forward.url"] == "https://app.example:8443/…" and str(s.forward.url) == "Secret(<hidden>)"
    redact = Redactor(s.secrets)
    for leak in ("pa55word", "/hooks/sms/s3cr3t-path", "key=k3y-value", "user:pa55word@app.example:8443"):
        assert "****" in redact(f"error at {leak} here") and leak not in redact(f"error at {leak} here")
    assert redact("Cannot connect to host app.example:8443") == "Cannot connect to host app.example:8443"
    assert load(SMSMON_FORWARD_URL="http://127.0.0.1:3000").secrets == ["http://127.0.0.1:3000"]


@pytest.mark.parametrize("env, message", [
    ({"SMSMON_FORWARD_URL": "ftp://app.example/x"}, "forward.url (env SMSMON_FORWARD_URL): the scheme 'ftp' is not http or https"),
    ({"SMSMON_FORWARD_URL": "http://"}, "forward.url (env SMSMON_FORWARD_URL): "),
    ({"SMSMON_PUBLIC_URL": "https://sms.example.com/?token=x"}, "public_url (env SMSMON_PUBLIC_URL): 'https://sms.example.com/?token=x' must be a plain base URL"),
    ({"SMSMON_TRUST_PROXY": "127.0.0.1, proxy.local"}, "listener.trust_proxy (env SMSMON_TRUST_PROXY): "),
    ({"SMSMON_FORWARD_TIMEOUT": "soon"}, "forward.timeout (env SMSMON_FORWARD_TIMEOUT): "),
])
def test_a_bad_value_names_the_setting_and_where_it_came_from(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**env)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("url", ["htps://app.example/hooks/s3cr3t", "http://app.example:99999/hooks/s3cr3t",
                                 "http://app.example:abc/hooks/s3cr3t", "app.example/hooks/s3cr3t"])
@pytest.mark.parametrize("env, key", [("SMSMON_FORWARD_URL", "forward.url"), ("SMSMON_ALERTS_WEBHOOK", "alerts.webhook")])
def test_a_mistyped_secret_url_is_refused_without_showing_its_credential(url: str, env: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{env: url})
    assert "s3cr3t" not in str(info.value) and str(info.value).startswith(f"{key} (env {env}): ")


def test_the_alerts_webhook_shows_its_origin_only() -> None:
    s = load(SMSMON_ALERTS_WEBHOOK="https://hooks.example/services/T00/B00/s3cr3t")
    assert dict((k, v) for k, v, _ in s.shown())["alerts.webhook"] == "https://hooks.example/…"


def test_values_parse() -> None:
    s = load(SMSMON_PUBLIC_URL="https://sms.example.com/smsmon/", SMSMON_TRUST_PROXY="127.0.0.1, 10.0.0.0/8",
             SMSMON_FORWARD_TIMEOUT="3s")
    assert s.public_url == "https://sms.example.com/smsmon"
    assert s.listener.trust_proxy == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    assert s.forward.timeout.total_seconds() == 3 and s.forward.url is None
    assert dict((k, v) for k, v, _ in s.shown())["listener.trust_proxy"] == "127.0.0.1/32, 10.0.0.0/8"
