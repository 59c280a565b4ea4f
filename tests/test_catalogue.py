"""SPEC §4: an explanation for every status and code, in the fields users need."""

from __future__ import annotations

import re

import pytest

from smsmon import catalogue
from smsmon.catalogue import Kind
from smsmon.lifecycle import Flag, Status
from tests.helpers import DATA


def _doc_codes(name: str) -> set[str]:
    """Statuses and codes listed in a provider document's tables (`VALUE | text`)."""
    text = (DATA / "providers" / name).read_text()
    found = set(re.findall(r"^([A-Z][A-Z_]+|\d+) \|", text, re.M))
    found |= set(re.findall(r"QUEUED|PROCESSING|SCHEDULED|BUFFERED", text))  # the Status-API-only states, run together
    return found


ZECKTA_DOC = _doc_codes("zeckta-delivery-callbacks.txt")
EAZITA_DOC = _doc_codes("eazita-delivery-reports.txt")


def test_the_documents_were_read() -> None:
    assert {"SUBMITTED", "DELIVERED", "MESSAGE_SENT", "BUFFERED"} <= ZECKTA_DOC
    assert {"SUBMIT", "NOT_ALLOWED", "101", "500"} <= EAZITA_DOC


@pytest.mark.parametrize("code", sorted(ZECKTA_DOC))
def test_every_zeckta_status_and_event_type_in_the_document_has_an_entry(code: str) -> None:
    entries = [e for e in catalogue.lookup(code, "zeckta") if e.kind is Kind.STATUS]
    assert entries, code
    assert entries[0].recognized


@pytest.mark.parametrize("code", sorted(EAZITA_DOC))
def test_every_eazita_status_and_error_code_in_the_document_has_an_entry(code: str) -> None:
    kind = Kind.ERROR_CODE if code.isdigit() else Kind.STATUS
    assert [e for e in catalogue.lookup(code, "eazita") if e.kind is kind], code


@pytest.mark.parametrize("code", ["1", "-1", "-2", "-3", "-4", "-5", "-6", "-7"])
def test_every_eazita_envelope_code_has_an_entry(code: str) -> None:
    assert [e for e in catalogue.lookup(code, "eazita") if e.kind is Kind.API_CODE]


@pytest.mark.parametrize("status", [s.value for s in Status])
def test_every_normalized_status_has_an_entry(status: str) -> None:
    assert [e for e in catalogue.lookup(status, "smsmon") if e.kind is Kind.NORMALIZED]


@pytest.mark.parametrize("flag", [f.value for f in Flag])
def test_every_flag_has_an_entry(flag: str) -> None:
    assert [e for e in catalogue.lookup(flag) if e.kind is Kind.FLAG]


@pytest.mark.parametrize("code", ["invalid_json", "invalid_payload", "body_too_large", "bad_token", "method_not_allowed",
                                  "forbidden_address", "store_unavailable", "poll_timeout", "poll_connect_error",
                                  "poll_auth", "poll_not_found", "poll_http_error", "poll_rate_limited", "poll_server_error",
                                  "poll_html_body", "poll_invalid_json", "poll_bad_shape", "poll_api_error"])
def test_every_listener_and_poller_failure_has_an_entry(code: str) -> None:
    assert [e for e in catalogue.lookup(code) if e.kind is Kind.FAILURE]


@pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: f"{e.provider}-{e.kind.value}-{e.code}")
def test_entries_are_complete(entry: catalogue.Entry) -> None:
    assert entry.title and entry.meaning.endswith(".") and entry.action and entry.causes
    assert entry.sureness in ("documented", "inferred")
    assert isinstance(entry.retryable, catalogue.Retryable) and isinstance(entry.group, catalogue.Group)
    d = entry.to_dict()
    assert {"code", "provider", "title", "meaning", "causes", "action", "retryable", "permanent", "group", "sureness"} <= set(d)


def test_entries_are_unique() -> None:
    keys = [(e.provider, e.kind, e.code) for e in catalogue.ENTRIES]
    assert len(keys) == len(set(keys))


def test_provider_statuses_know_their_normalized_status() -> None:
    (sent,) = catalogue.lookup("SENT", "eazita")
    assert sent.normalized == "UNCONFIRMED"
    assert catalogue.outcome_for(sent) == "UNKNOWN"


def test_the_same_word_means_different_things_per_provider() -> None:
    entries = catalogue.explain("expired")
    assert [e.provider for e in entries] == ["zeckta", "eazita"]
    assert entries[0].meaning != entries[1].meaning


@pytest.mark.parametrize("query,provider,kind", [
    ("message_delivered", "zeckta", Kind.STATUS), (" 101 ", "eazita", Kind.ERROR_CODE), ("0101", "eazita", Kind.ERROR_CODE),
    ("-2", "eazita", Kind.API_CODE), ("unconfirmed", "smsmon", Kind.NORMALIZED), ("LATE_DLR", "smsmon", Kind.FLAG),
])
def test_lookup_is_forgiving(query: str, provider: str, kind: Kind) -> None:
    (entry, *_) = catalogue.explain(query)
    assert (entry.provider, entry.kind) == (provider, kind)


def test_unknown_codes_get_an_unrecognized_entry_never_a_blank() -> None:
    (entry,) = catalogue.explain("8", "eazita")
    assert not entry.recognized
    assert "8" in entry.title and "roaming not allowed" in entry.meaning and entry.sureness == "inferred"
    (other,) = catalogue.explain("zz-top")
    assert not other.recognized and other.meaning and other.action


def test_message_explanations() -> None:
    assert catalogue.explain_error("eazita", None) is None
    assert catalogue.explain_error("eazita", "104").title == "Insufficient credit"
    assert not catalogue.explain_error("eazita", "8").recognized
    assert catalogue.explain_status("zeckta", "DELIVERED").provider == "zeckta"
    assert catalogue.explain_status("zeckta", "READ").code == "UNKNOWN"
