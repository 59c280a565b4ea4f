"""Provider parsers: the documented payloads, every quirk in PROVIDER-NOTES.md, and no crash on any input."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsmon.errors import ParseError, ProviderAPIError
from smsmon.lifecycle import Flag, Status
from smsmon.providers import eazita, events_from_object, zeckta
from smsmon.timeutil import zone
from tests.helpers import DATA, KARACHI, NOW, callback, report_row

DOC_CALLBACK = (b'{"eventId": "4075b658-81d8-4f66-8da4-eb88ac4592b6", "eventType": "MESSAGE_DELIVERED",'
                b' "timestamp": "2026-06-09T13:04:57.487133482Z", "message": {"uuid": "016205e1-3c54-4b7a-9f4e-8a2d1c0b9e77"}}')


# ── Zeckta callbacks ─────────────────────────────────────────────────────────────
def test_the_documented_callback_parses_with_nine_fractional_digits() -> None:
    ev = zeckta.parse_callback(DOC_CALLBACK, received_at=NOW)
    assert ev.message_id == "zeckta:016205e1-3c54-4b7a-9f4e-8a2d1c0b9e77"
    assert ev.event_key == "4075b658-81d8-4f66-8da4-eb88ac4592b6"
    assert ev.status is Status.DELIVERED
    assert ev.event_time == "2026-06-09T13:04:57.487133Z"
    assert json.loads(ev.raw)["timestamp"] == "2026-06-09T13:04:57.487133482Z"  # raw string kept
    assert ev.source == "callback"


@pytest.mark.parametrize("event_type", ["MESSAGE_SUBMITTED", "MESSAGE_SENT", "MESSAGE_DELIVERED", "MESSAGE_FAILED",
                                        "MESSAGE_UNDELIVERABLE", "MESSAGE_EXPIRED", "MESSAGE_REJECTED"])
def test_every_documented_event_type(event_type: str) -> None:
    ev = zeckta.parse_callback(json.dumps(callback(event_type)).encode(), received_at=NOW)
    assert ev.status is Status(event_type.removeprefix("MESSAGE_"))
    assert ev.event_type == event_type
    assert not ev.flags


@pytest.mark.parametrize("ts,expected", [
    ("2026-06-09T13:04:57Z", "2026-06-09T13:04:57.000000Z"),
    ("2026-06-09T13:04:57.5Z", "2026-06-09T13:04:57.500000Z"),
    ("2026-06-09T15:04:57.123+02:00", "2026-06-09T13:04:57.123000Z"),
    ("2026-06-09 13:04:57", "2026-06-09T13:04:57.000000Z"),  # no zone: UTC
    ("2026-06-09t13:04:57.123456789123z", "2026-06-09T13:04:57.123456Z"),
])
def test_timestamps_are_parsed_tolerantly_to_utc(ts: str, expected: str) -> None:
    ev = zeckta.parse_callback(json.dumps(callback(at=ts)).encode(), received_at=NOW)
    assert ev.event_time == expected


def test_attributes_are_coerced_and_junk_is_dropped_not_fatal() -> None:
    body = callback(segments="2", units="1.5", attempts=3.0, cost="0.024", dest="+233 24 123-4567", src=123)
    ev = zeckta.parse_callback(json.dumps(body).encode(), received_at=NOW)
    assert ev.attrs == {"segments": 2, "units": 1.5, "attempts": 3, "cost": 0.024, "dest": "+233241234567", "src": "123",
                        "country_code": "233"}  # Zeckta gives no country: derived from the number
    body = callback(segments="many", cost={"amount": 1}, attempts=True, dest=None)
    ev = zeckta.parse_callback(json.dumps(body).encode(), received_at=NOW)
    assert "segments" not in ev.attrs and "cost" not in ev.attrs and "attempts" not in ev.attrs and "dest" not in ev.attrs
    assert json.loads(ev.raw)["message"]["segments"] == "many"  # nothing lost: the raw payload keeps it


def test_cost_may_be_null_or_absent_on_non_final_events() -> None:
    body = callback("MESSAGE_SENT")
    body["message"].pop("segments")
    body["message"]["cost"] = None
    assert "cost" not in zeckta.parse_callback(json.dumps(body).encode(), received_at=NOW).attrs


def test_unknown_event_types_are_accepted_as_unknown() -> None:
    ev = zeckta.parse_callback(json.dumps(callback("MESSAGE_READ")).encode(), received_at=NOW)
    assert ev.status is Status.UNKNOWN and ev.raw_status == "READ" and Flag.UNMAPPED in ev.flags


def test_a_time_far_in_the_future_is_flagged_clock_skew() -> None:
    ev = zeckta.parse_callback(json.dumps(callback(at=NOW + timedelta(minutes=11))).encode(), received_at=NOW)
    assert Flag.CLOCK_SKEW in ev.flags
    ev = zeckta.parse_callback(json.dumps(callback(at=NOW + timedelta(minutes=9))).encode(), received_at=NOW)
    assert Flag.CLOCK_SKEW not in ev.flags


def _without(path: str) -> bytes:
    body = callback()
    *parents, last = path.split(".")
    target = body
    for p in parents:
        target = target[p]
    del target[last]
    return json.dumps(body).encode()


@pytest.mark.parametrize("body,reason", [
    (b"", "invalid JSON"),
    (b"not json", "invalid JSON"),
    (b"[1, 2]", "Expected `object`, got `array`"),
    (b'"text"', "Expected `object`, got `str`"),
    (b"null", "Expected `object`, got `null`"),
    (_without("eventId"), "missing required field `eventId`"),
    (_without("eventType"), "missing required field `eventType`"),
    (_without("timestamp"), "missing required field `timestamp`"),
    (_without("message.uuid"), "missing required field `uuid`"),
    (json.dumps(dict(callback(), eventId="")).encode(), "`eventId` is empty"),
    (json.dumps(dict(callback(), eventType=7)).encode(), "Expected `str`, got `int`"),
    (json.dumps(dict(callback(), timestamp="yesterday")).encode(), "`timestamp`: not an ISO-8601 time"),
    (json.dumps(dict(callback(), timestamp="2026-13-45T99:00:00Z")).encode(), "`timestamp`"),
    (json.dumps(dict(callback(), message="x")).encode(), "Expected `object`, got `str`"),
    (b'{"eventId": ' + b"[" * 30000 + b"]" * 30000 + b"}", "Expected `int | str`, got `array`"),
    (b'{"extra": ' + b"[" * 30000 + b"]" * 30000 + b', "eventId": "a"}', "JSON nested too deeply"),
    (b'{"extra": ' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b', "eventId": "a"}', "JSON nested too deeply"),
    (b"\xff\xfe\x00garbage", "invalid JSON"),
])
def test_bad_callbacks_raise_a_parse_error_naming_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        zeckta.parse_callback(body, received_at=NOW)
    assert reason in info.value.reason


# ── Zeckta Status API ─────────────────────────────────────────────────────────────
def test_status_api_answer_and_its_event() -> None:
    body = b'{"success": true, "data": {"messageId": "m-1", "status": "delivered"}, "requestId": "r"}'
    mid, status = zeckta.parse_status_answer(body)
    assert (mid, status) == ("m-1", "delivered")
    ev = zeckta.status_event(mid, status, received_at=NOW, raw=body.decode())
    assert ev.status is Status.DELIVERED and ev.source == "status_api"
    again = zeckta.status_event(mid, status, received_at=NOW + timedelta(minutes=5), raw=body.decode())
    assert again.event_key == ev.event_key  # asking again is idempotent


@pytest.mark.parametrize("status", ["queued", "processing", "scheduled", "buffered", "submitted", "sent", "delivered",
                                    "failed", "undeliverable", "expired", "rejected"])
def test_status_api_lowercase_statuses_map(status: str) -> None:
    ev = zeckta.status_event("m", status, received_at=NOW, raw="{}")
    assert ev.status is Status(status.upper())


def test_status_api_errors() -> None:
    with pytest.raises(ProviderAPIError, match="not found"):
        zeckta.parse_status_answer(b'{"success": false, "message": "Message not found"}')
    with pytest.raises(ParseError):
        zeckta.parse_status_answer(b'{"success": true}')
    with pytest.raises(ParseError):
        zeckta.parse_status_answer(b"<html>502 Bad Gateway</html>")


# ── Eazita delivery reports ───────────────────────────────────────────────────────
def test_eazitas_own_sample_with_all_its_quirks() -> None:
    report = eazita.parse_response((DATA / "eazita_sample_response.json").read_bytes(), tz=KARACHI, received_at=NOW)
    assert report.errors == [] and report.rows == 4
    by_id = {e.provider_message_id: e for e in report.events}
    sent, failed, delivered = by_id["569399"], by_id["564743"], by_id["564581"]
    assert sent.status is Status.UNCONFIRMED and sent.raw_status == "SENT"
    assert sent.event_time == "2018-03-25T14:10:27.000000Z"  # done_date (final), Asia/Karachi is UTC+5
    assert sent.attrs == {"cost": 0.003, "network": "Zong", "country_code": "92", "reference": "my-msg-reference"}
    assert failed.status is Status.FAILED and failed.error_code == "8"  # a code the docs do not list
    assert failed.attrs["country_code"] == "92"  # "9292": the prefix doubled
    assert "reference" not in failed.attrs  # null
    assert json.loads(failed.raw)["country_code"] == "9292"  # raw kept as received
    assert delivered.error_code == "0" and delivered.attrs["cost"] == 0.004


@pytest.mark.parametrize("status,normalized", [("SUBMIT", "QUEUED"), ("PENDING", "SENT"), ("SENT", "UNCONFIRMED"),
                                               ("EXPIRED", "EXPIRED"), ("DELIVERED", "DELIVERED"), ("REJECTED", "REJECTED"),
                                               ("NOT_DELIVERED", "UNDELIVERABLE"), ("FAILED", "FAILED"),
                                               ("NOT_ALLOWED", "REJECTED")])
def test_every_documented_eazita_status(status: str, normalized: str) -> None:
    ev = eazita.row_event(report_row(status), tz=KARACHI, received_at=NOW)
    assert ev.status is Status(normalized)


def test_event_time_is_done_date_for_finals_and_sent_date_otherwise() -> None:
    row = dict(sent="2026/11/23 16:00:00", done="2026/11/23 16:30:00")
    assert eazita.row_event(report_row("DELIVERED", **row), tz=KARACHI, received_at=NOW).event_time == "2026-11-23T11:30:00.000000Z"
    assert eazita.row_event(report_row("PENDING", **row), tz=KARACHI, received_at=NOW).event_time == "2026-11-23T11:00:00.000000Z"
    queued = eazita.row_event(report_row("SUBMIT", sent=None, done=None), tz=KARACHI, received_at=NOW)
    assert queued.event_time == "2026-11-23T12:00:00.000000Z"  # no dates yet: when it was seen
    again = eazita.row_event(report_row("SUBMIT", sent=None, done=None), tz=KARACHI, received_at=NOW + timedelta(seconds=30))
    assert again.event_key == queued.event_key  # polled again: the same event


def test_the_timezone_setting_is_applied() -> None:
    ev = eazita.row_event(report_row("DELIVERED", done="2026/11/23 16:30:00"), tz=zone("UTC"), received_at=NOW)
    assert ev.event_time == "2026-11-23T16:30:00.000000Z"


def test_done_before_sent_is_clock_skew() -> None:
    ev = eazita.row_event(report_row("DELIVERED", sent="2026/11/23 16:30:00", done="2026/11/23 16:00:00"), tz=KARACHI,
                          received_at=NOW)
    assert Flag.CLOCK_SKEW in ev.flags


def test_repeated_poll_rows_have_the_same_key_and_changed_rows_a_new_one() -> None:
    a = eazita.row_event(report_row("PENDING", done=None), tz=KARACHI, received_at=NOW)
    b = eazita.row_event(report_row("PENDING", done=None), tz=KARACHI, received_at=NOW + timedelta(minutes=1))
    c = eazita.row_event(report_row("DELIVERED"), tz=KARACHI, received_at=NOW + timedelta(minutes=1))
    assert a.event_key == b.event_key != c.event_key


@pytest.mark.parametrize("code", ["-1", "-2", "-3", "-4", "-5", "-6", "-7"])
def test_error_envelopes_are_api_errors_not_message_data(code: str) -> None:
    body = json.dumps({"code": int(code), "error": "Authentication Error - No credentials provided"}).encode()
    with pytest.raises(ProviderAPIError) as info:
        eazita.parse_response(body, tz=KARACHI, received_at=NOW)
    assert info.value.code == code and "Authentication" in info.value.message


def test_code_as_a_string_and_empty_data_are_fine() -> None:
    assert eazita.parse_response(b'{"code": "1", "data": []}', tz=KARACHI, received_at=NOW).events == []
    assert eazita.parse_response(b'{"code": 1}', tz=KARACHI, received_at=NOW).events == []


def test_a_bad_row_is_reported_and_the_others_are_kept() -> None:
    rows = [report_row("DELIVERED", message_id=1), {"status": "DELIVERED"}, "junk",
            report_row("DELIVERED", message_id=2, done="31/12/2026"), report_row("PENDING", message_id=3, done=None)]
    report = eazita.parse_response(json.dumps({"code": 1, "data": rows}).encode(), tz=KARACHI, received_at=NOW)
    assert [e.provider_message_id for e in report.events] == ["1", "3"]
    assert [i for i, _ in report.errors] == [1, 2, 3]
    assert "message_id" in report.errors[0][1] and "done_date" in report.errors[2][1]


@pytest.mark.parametrize("body", [b"<html><body>Service Unavailable</body></html>", b"{", b'{"data": []}',
                                  b'{"code": 1, "data": {"a": 1}}', b"[]",
                                  b'{"code": 1, "x": ' + b"[" * 30000 + b"]" * 30000 + b"}"])
def test_bad_envelopes_raise_parse_errors(body: bytes) -> None:
    with pytest.raises((ParseError, ProviderAPIError)):
        eazita.parse_response(body, tz=KARACHI, received_at=NOW)


# ── the registry ──────────────────────────────────────────────────────────────────
def test_objects_are_recognized_by_shape() -> None:
    assert events_from_object(callback(), tz=KARACHI, received_at=NOW)[0].provider == "zeckta"
    assert events_from_object(report_row(), tz=KARACHI, received_at=NOW)[0].provider == "eazita"
    sample = json.loads((DATA / "eazita_sample_response.json").read_text())
    assert len(events_from_object(sample, tz=KARACHI, received_at=NOW)) == 4
    assert all(e.source == "import" for e in events_from_object(sample, tz=KARACHI, received_at=NOW))
    with pytest.raises(ParseError, match="not a Zeckta callback"):
        events_from_object({"hello": 1}, tz=KARACHI, received_at=NOW)
    with pytest.raises(ParseError, match="expected a JSON object"):
        events_from_object([1], tz=KARACHI, received_at=NOW)


# ── nothing crashes a parser ──────────────────────────────────────────────────────
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


def _mutated_callbacks():
    keys = ["eventId", "eventType", "timestamp", "message"]
    return st.builds(lambda base, k, v: {**base, k: v}, st.just(callback()), st.sampled_from(keys), json_values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()) | _mutated_callbacks().map(lambda v: json.dumps(v).encode()))
def test_no_input_makes_the_callback_parser_raise_anything_else(body: bytes) -> None:
    try:
        zeckta.parse_callback(body, received_at=NOW)
    except ParseError:
        pass


def _mutated_rows():
    keys = ["message_id", "status", "price", "country_code", "done_date", "sent_date", "error_code", "reference"]
    return st.builds(lambda k, v: {**report_row(), k: v}, st.sampled_from(keys), json_values)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda rows: json.dumps({"code": 1, "data": rows}).encode(),
                                           st.lists(json_values | _mutated_rows(), max_size=4)))
def test_no_input_makes_the_report_parser_raise_anything_else(body: bytes) -> None:
    try:
        report = eazita.parse_response(body, tz=KARACHI, received_at=NOW)
    except (ParseError, ProviderAPIError):
        return
    assert len(report.events) + len(report.errors) == report.rows


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_no_object_makes_the_registry_raise_anything_else(obj) -> None:
    try:
        events_from_object(obj, tz=KARACHI, received_at=NOW)
    except (ParseError, ProviderAPIError):
        pass


def test_deeply_nested_objects_from_python_are_parse_errors() -> None:
    deep: object = 1
    for _ in range(200_000):
        deep = [deep]
    for obj in (dict(callback(), extra=deep), dict(report_row(), extra=deep)):
        with pytest.raises(ParseError, match="nested too deeply"):
            events_from_object(obj, tz=KARACHI, received_at=NOW)
