"""Settings: defaults < config file < environment < flags, with clear errors."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from smsmon import config
from smsmon.config import ConfigError, Secret, load


def test_precedence(tmp_path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('watch_window = "48h"\ndb = "/from/file.db"\n[eazita]\ntimezone = "UTC"\napi_key = "file-key"\n')
    s = load(f, env={})
    assert s.watch_window == timedelta(hours=48) and str(s.db) == "/from/file.db" and s.eazita.api_key == Secret("file-key")
    assert s.sources["watch_window"].startswith("file ") and s.sources["listen"] == "default"
    s = load(f, env={"SMSMON_DB": "/from/env.db", "SMSMON_EAZITA_TIMEZONE": "Asia/Karachi"})
    assert str(s.db) == "/from/env.db" and s.eazita.timezone.key == "Asia/Karachi"
    assert s.sources["db"] == "env SMSMON_DB"
    s = load(f, env={"SMSMON_DB": "/from/env.db"}, flags={"db": "/from/flag.db"})
    assert str(s.db) == "/from/flag.db" and s.sources["db"] == "flag"


def test_the_default_config_file_is_optional_but_a_named_one_is_not(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    assert str(load(env={}).listen) == "127.0.0.1:8787"
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load(env={"SMSMON_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize("text,message", [
    ("colour = 'red'", "unknown setting 'colour'"),
    ("[eazita]\ntimezone = 'Mars/Base'", "eazita.timezone .*unknown time zone"),
    ("watch_window = 'forever'", "watch_window .*not a duration"),
    ("this is not toml", "not valid TOML"),
])
def test_bad_config_files_say_what_is_wrong(tmp_path, text, message) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(f, env={})


def test_bad_environment_values_name_their_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="env SMSMON_WATCH_WINDOW"):
        load(env={"SMSMON_WATCH_WINDOW": "soon"})


def test_secrets_are_masked_when_shown(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    s = load(env={"SMSMON_EAZITA_PASSWORD": "hunter2-very-secret", "SMSMON_CALLBACK_TOKEN": "tok"})
    shown = {name: value for name, value, _ in s.shown()}
    assert "hunter2-very-secret" not in str(s.shown()) and "tok" not in shown["listener.token"]
    assert shown["eazita.password"] == "<19 characters>" and shown["zeckta.api_key"] == "(not set)"


def test_settings_are_typed_frozen_and_never_print_a_secret(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    s = load(env={"SMSMON_ZECKTA_API_KEY": "zk-very-secret-key", "SMSMON_EAZITA_INTERVAL": "45s"})
    assert s.eazita.interval == timedelta(seconds=45) and s.zeckta.configured and not s.eazita.configured
    assert "zk-very-secret-key" not in repr(s) and "zk-very-secret-key" not in str(s.zeckta.api_key)
    assert s.zeckta.api_key.reveal() == "zk-very-secret-key" and s.secrets == ["zk-very-secret-key"]
    with pytest.raises(AttributeError):
        s.db = tmp_path / "other.db"  # type: ignore[misc]
    demo = s.override({"eazita.url": "http://127.0.0.1:9", "eazita.api_key": "k"}, source="demo")
    assert demo.eazita.url == "http://127.0.0.1:9" and demo.sources["eazita.url"] == "demo" and s.eazita.url != demo.eazita.url


# ── issue 9: secrets checked as they load, shown by length only ─────────────────
@pytest.mark.parametrize("env,key,bad", [
    ("SMSMON_ZECKTA_API_KEY", "zeckta.api_key", "zk-key-0123\r456789"),  # a stray carriage return inside
    ("SMSMON_EAZITA_PASSWORD", "eazita.password", "pass-\x1b[31m-word"),  # a terminal escape
    ("SMSMON_EAZITA_API_KEY", "eazita.api_key", "ez-key\u200b-0123456"),  # an invisible zero-width space
    ("SMSMON_CALLBACK_TOKEN", "listener.token", "tok\x07en-0123456789"),  # a bell
])
def test_a_secret_with_a_control_character_is_refused_naming_the_setting(tmp_path, monkeypatch, env, key, bad) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as caught:
        load(env={env: bad})
    message = str(caught.value)
    assert message.startswith(f"{key} (env {env}): contains a control character") and "copy the secret again" in message
    assert not any(bad[i : i + 5] in message for i in range(len(bad) - 4))  # nothing of the secret itself


def test_secrets_from_the_config_file_are_checked_too(tmp_path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[zeckta]\napi_key = "zk-key-0123\\r456789"\n')
    with pytest.raises(ConfigError, match=r"zeckta.api_key \(file .*c.toml\): contains a control character \(U\+000D, character 12 of 18\)"):
        load(f, env={})


def test_a_zeckta_key_must_fit_in_an_http_header_and_a_token_in_a_url(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="zeckta.api_key .*only printable ASCII"):
        load(env={"SMSMON_ZECKTA_API_KEY": "zk-clé-0123456789"})
    with pytest.raises(ConfigError, match="listener.token .*cannot be part of a URL path: it contains '/'"):
        load(env={"SMSMON_CALLBACK_TOKEN": "abc/def0123456789"})
    assert load(env={"SMSMON_EAZITA_PASSWORD": "pässwörd with spaces & more"}).eazita.password  # a query string carries anything


def test_a_short_secret_loads_with_a_warning_that_says_why(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(config, "default_config", lambda: tmp_path / "absent.toml")
    logger = logging.getLogger("smsmon.config")
    logger.addHandler(caplog.handler)  # whatever a command earlier in this process did to smsmon's logging
    try:
        s = load(env={"SMSMON_ZECKTA_API_KEY": "k", "SMSMON_EAZITA_API_KEY": "long-enough-key"})
    finally:
        logger.removeHandler(caplog.handler)
    assert s.zeckta.api_key == Secret("k")
    assert s.warnings == [("zeckta.api_key (env SMSMON_ZECKTA_API_KEY) is shorter than 6 characters: smsmon masks it"
                           " wherever it appears, so log lines and errors that happen to contain those characters will"
                           " be garbled; a longer secret avoids it")]
    assert "warning: zeckta.api_key (env SMSMON_ZECKTA_API_KEY) is shorter than 6 characters" in caplog.text


def test_a_shown_secret_gives_away_nothing_but_its_length() -> None:
    token = "0123456789abcdef0123456789abcdef"
    assert Secret(token).masked() == "<32 characters>"
    assert not any(token[i : i + 2] in Secret(token).masked() for i in range(len(token) - 1))
    assert repr(Secret(token)) == str(Secret(token)) == "Secret(<hidden>)"
