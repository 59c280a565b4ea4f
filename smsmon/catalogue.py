"""Explanations of every status, error code, API code, flag and ingest failure (SPEC §4).

Pure data and lookup. Written in smsmon's own words from the facts in the provider documents
and PROVIDER-NOTES.md. `sureness` says whether a provider documents the meaning or we infer it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass
from typing import Any

from smsmon.errors import Failure
from smsmon.lifecycle import Status, normalize, outcome_of, raw_key


class Retryable(enum.StrEnum):
    NO = "no"
    AFTER_FIX = "after fix"
    LATER = "later"
    NA = "n/a"


class Permanent(enum.StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class Group(enum.StrEnum):
    RECIPIENT = "recipient"
    CARRIER = "carrier"
    PROVIDER = "provider"
    ACCOUNT = "account"
    CONTENT = "content"
    UNKNOWN = "unknown"


class Kind(enum.StrEnum):
    STATUS = "status"  # a provider's raw status
    NORMALIZED = "normalized"  # smsmon's normalized status
    ERROR_CODE = "error_code"  # a per-message error code (Eazita error_code)
    API_CODE = "api_code"  # an API envelope code (Eazita code)
    FLAG = "flag"  # an anomaly smsmon records on an event or message
    FAILURE = "failure"  # a listener or poller failure


@dataclass(frozen=True)
class Entry:
    code: str
    provider: str  # zeckta, eazita, or smsmon for our own
    kind: Kind
    title: str
    meaning: str
    causes: tuple[str, ...]
    action: str
    retryable: Retryable
    permanent: Permanent
    group: Group
    sureness: str = "documented"  # or "inferred"; "unknown" for a code nobody documents
    normalized: str | None = None  # for provider statuses: the normalized status
    recognized: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["causes"] = list(self.causes)
        return {k: (str(v) if isinstance(v, enum.Enum) else v) for k, v in d.items()}


R, P, G = Retryable, Permanent, Group
_E: list[Entry] = []


def _add(code: str, provider: str, kind: Kind, title: str, meaning: str, causes: tuple[str, ...] | list[str], action: str,
         retryable: Retryable, permanent: Permanent, group: Group, sureness: str = "documented") -> None:
    normalized = normalize(provider, code).value if kind is Kind.STATUS else None
    _E.append(Entry(code, provider, kind, title, meaning, tuple(causes), action, retryable, permanent, group, sureness, normalized))


# ── Zeckta statuses ────────────────────────────────────────────────────────────────
S = Kind.STATUS
_add("SCHEDULED", "zeckta", S, "Scheduled for later",
     "Zeckta holds the message until its scheduled send time. Seen only through the Status API; no callback is sent for it.",
     ["The message was sent with a future send time."], "Nothing to do; it moves to processing at the scheduled time.",
     R.NA, P.NO, G.PROVIDER)
_add("QUEUED", "zeckta", S, "Queued at Zeckta",
     "Zeckta accepted the request and queued the message. Internal state: seen through the Status API, never in a callback.",
     ["Normal first step after sending."], "Nothing to do. If it stays queued for long, ask Zeckta about their queue.",
     R.NA, P.NO, G.PROVIDER)
_add("PROCESSING", "zeckta", S, "Being processed by Zeckta",
     "Zeckta is preparing the message for the carrier. Internal state: seen through the Status API only.",
     ["Normal step between queued and submitted."], "Nothing to do.", R.NA, P.NO, G.PROVIDER)
_add("SUBMITTED", "zeckta", S, "Accepted by Zeckta",
     "Zeckta accepted the message and queued it for delivery. The first state that arrives as a callback.",
     ["Normal step."], "Nothing to do; SENT should follow within seconds.", R.NA, P.NO, G.PROVIDER)
_add("BUFFERED", "zeckta", S, "Buffered on the way",
     "The message is held on the way to the handset, typically because the phone is off or out of coverage, and delivery will be retried. Internal state: Status API only.",
     ["Handset switched off or out of coverage.", "Carrier congestion."],
     "Wait: it usually resolves to delivered or expired. Ask the recipient whether the phone is on.",
     R.NA, P.NO, G.RECIPIENT, "inferred")
_add("SENT", "zeckta", S, "Handed to the carrier",
     "Zeckta submitted the message to the upstream carrier. A delivery report from the handset is still to come.",
     ["Normal step."], "Nothing to do; DELIVERED or a failure should follow. If nothing comes within the watch window, ask the Status API.",
     R.NA, P.NO, G.CARRIER)
_add("DELIVERED", "zeckta", S, "Delivered to the handset",
     "The carrier confirmed the message reached the recipient's handset. Terminal: no further updates come.",
     ["Success."], "Nothing to do. If the recipient says it never arrived, it was received by the handset but may have been filtered or deleted there.",
     R.NA, P.YES, G.RECIPIENT)
_add("FAILED", "zeckta", S, "Delivery attempt failed",
     "A delivery attempt failed and Zeckta will not retry it automatically. Terminal. Zeckta gives no reason code.",
     ["Carrier or network error.", "Invalid or unreachable number.", "Content or sender blocked by the carrier."],
     "Check the number and sender ID, then send again. If many messages to one network fail together, it is likely a carrier problem: tell Zeckta.",
     R.AFTER_FIX, P.UNKNOWN, G.CARRIER)
_add("UNDELIVERABLE", "zeckta", S, "Number could not be reached",
     "The network or handset could not accept the message. Terminal.",
     ["Number not in service or not a mobile number.", "Handset cannot receive SMS.", "Number ported and not routable."],
     "Verify the number with the recipient; do not resend to the same number unchanged.",
     R.AFTER_FIX, P.YES, G.RECIPIENT)
_add("EXPIRED", "zeckta", S, "Validity period ran out",
     "The carrier could not deliver within the message's validity period and gave up. Terminal for Zeckta.",
     ["Handset off or out of coverage for the whole validity period.", "Roaming restrictions."],
     "Resend if the content is still useful (an OTP usually is not: send a new one). Ask the recipient to check the phone is on and has coverage.",
     R.LATER, P.NO, G.RECIPIENT)
_add("REJECTED", "zeckta", S, "Rejected before delivery",
     "The message was rejected before delivery processing completed. Terminal.",
     ["Sender ID not allowed for the destination.", "Content blocked by a filter.", "Account restriction or insufficient balance."],
     "Check the sender ID registration, the content and the account status with Zeckta before resending.",
     R.AFTER_FIX, P.YES, G.ACCOUNT)

# ── Eazita statuses ────────────────────────────────────────────────────────────────
_add("SUBMIT", "eazita", S, "Queued at Eazita",
     "Eazita queued the message; no error so far.", ["Normal first step."],
     "Nothing to do; the next poll should show PENDING or a result.", R.NA, P.NO, G.PROVIDER)
_add("PENDING", "eazita", S, "Sent, waiting for delivery",
     "The message was sent and Eazita is waiting for the carrier's delivery report.", ["Normal step."],
     "Nothing to do yet. Reports may take minutes, sometimes hours.", R.NA, P.NO, G.CARRIER)
_add("DELIVERED", "eazita", S, "Delivered", "The message was delivered to the handset.", ["Success."],
     "Nothing to do.", R.NA, P.YES, G.RECIPIENT)
_add("SENT", "eazita", S, "Sent, no delivery report",
     "The message was sent but no delivery report exists for it, so delivery cannot be confirmed. This does not mean it failed, and a later report may still arrive (smsmon calls this UNCONFIRMED).",
     ["The destination network does not return delivery reports.", "The report was lost on the way back."],
     "Treat as probably delivered. If delivery matters (OTP), ask the recipient, or use a route with delivery reports.",
     R.NA, P.UNKNOWN, G.CARRIER)
_add("REJECTED", "eazita", S, "Rejected", "The message was rejected and will not be delivered.",
     ["Sender ID or content not accepted.", "Invalid destination.", "Account restriction."],
     "Look at the error code for the reason; fix the sender, content or number before resending.",
     R.AFTER_FIX, P.YES, G.ACCOUNT)
_add("EXPIRED", "eazita", S, "No status in time",
     "Eazita did not receive a status for the message in time. Unlike Zeckta's EXPIRED this does not prove non-delivery: a late report may still arrive (soft-final; smsmon's outcome is UNKNOWN).",
     ["Carrier slow to report or not reporting.", "Handset off for a long time."],
     "Wait for a late report; if delivery matters, ask the recipient or send again.",
     R.LATER, P.UNKNOWN, G.CARRIER)
_add("NOT_DELIVERED", "eazita", S, "Not delivered", "The carrier reported that the message was not delivered.",
     ["Number unreachable or not in service.", "Handset cannot receive SMS."],
     "Check the error code and the number; resend only after fixing the cause.",
     R.AFTER_FIX, P.YES, G.RECIPIENT)
_add("FAILED", "eazita", S, "Network failure while sending",
     "A network failure happened while sending the message. The error code may carry the network's reason.",
     ["Carrier network error.", "Routing problem at Eazita or upstream."],
     "Resend later; if failures cluster on one network, report it to Eazita with the error codes.",
     R.LATER, P.NO, G.CARRIER)
_add("NOT_ALLOWED", "eazita", S, "Blocked by the carrier",
     "A carrier restriction blocked the message, for example on its sender ID or content.",
     ["Sender ID not registered or not allowed on the network.", "Content matched a carrier filter."],
     "Register the sender ID for the destination network or change the content; resending unchanged will fail again.",
     R.AFTER_FIX, P.YES, G.CONTENT)

# ── Eazita error codes ─────────────────────────────────────────────────────────────
EC = Kind.ERROR_CODE
_add("0", "eazita", EC, "No error", "No error; mostly seen while the message is queued, and on successful reports.",
     ["Normal."], "Nothing to do.", R.NA, P.NO, G.UNKNOWN)
_add("101", "eazita", EC, "Invalid phone number", "The phone number supplied is not valid.",
     ["Typo or missing digits.", "Missing country code, or a local format where an international one is needed."],
     "Correct the number (international format, e.g. 92300…) and send again.", R.AFTER_FIX, P.YES, G.RECIPIENT)
_add("102", "eazita", EC, "Number cannot receive SMS", "The phone number does not support messages.",
     ["A landline or data-only SIM.", "A number type the route does not serve."],
     "Ask the recipient for a mobile number; resending to this number will fail.", R.NO, P.YES, G.RECIPIENT)
_add("103", "eazita", EC, "Network failure", "A network failure happened while sending the request.",
     ["Temporary carrier or interconnect failure."], "Send again later.", R.LATER, P.NO, G.CARRIER)
_add("104", "eazita", EC, "Insufficient credit", "The account did not have enough credit for this message.",
     ["Balance ran out."], "Top up the Eazita account, then resend what failed.", R.AFTER_FIX, P.NO, G.ACCOUNT)
_add("105", "eazita", EC, "Processing error", "Eazita hit an error while processing the message.",
     ["An error inside Eazita."], "Resend later; if it repeats, report it to Eazita with the message id.",
     R.LATER, P.NO, G.PROVIDER)
_add("500", "eazita", EC, "Failed, no reason given", "The message failed and Eazita gave no reason.",
     ["Unknown."], "Resend later; if it repeats for one network, report it to Eazita.", R.LATER, P.UNKNOWN, G.UNKNOWN)

# ── Eazita API envelope codes ──────────────────────────────────────────────────────
AC = Kind.API_CODE
_add("1", "eazita", AC, "Success", "The API call succeeded.", ["Normal."], "Nothing to do.", R.NA, P.NO, G.UNKNOWN)
_add("-1", "eazita", AC, "Missing parameters", "The call lacked a mandatory parameter (for example `api` or `pass`).",
     ["The API key or password is not configured."],
     "Set SMSMON_EAZITA_API_KEY and SMSMON_EAZITA_PASSWORD (or the config file), then poll again.", R.AFTER_FIX, P.YES, G.ACCOUNT)
_add("-2", "eazita", AC, "Invalid or disabled credentials", "The API key or password is wrong, or the key is disabled.",
     ["Typo in the key or password.", "Password changed.", "Key disabled in the Eazita dashboard."],
     "Check the key and password in the Eazita dashboard and update smsmon's settings.", R.AFTER_FIX, P.YES, G.ACCOUNT)
_add("-3", "eazita", AC, "Insufficient credit", "The account does not have enough credit.", ["Balance ran out."],
     "Top up the account.", R.AFTER_FIX, P.NO, G.ACCOUNT)
_add("-4", "eazita", AC, "Sender name not allowed", "The sender name is not allowed for this account or destination.",
     ["Sender ID not registered."], "Register the sender ID with Eazita or use an approved one.", R.AFTER_FIX, P.YES, G.ACCOUNT)
_add("-5", "eazita", AC, "Number not recognized", "The destination number was not recognized.", ["Malformed number."],
     "Fix the number.", R.AFTER_FIX, P.YES, G.RECIPIENT)
_add("-6", "eazita", AC, "General error", "Eazita reported a general error.", ["Unspecified problem at Eazita."],
     "Try again later; smsmon's poller backs off by itself.", R.LATER, P.NO, G.PROVIDER)
_add("-7", "eazita", AC, "Platform error", "Eazita's platform failed while processing the request.", ["Outage at Eazita."],
     "Nothing to fix on your side: the poller retries with backoff. Tell Eazita if it lasts.", R.LATER, P.NO, G.PROVIDER)

# ── smsmon's normalized statuses ───────────────────────────────────────────────────
N = Kind.NORMALIZED
for _st, _t, _m in [
    ("SCHEDULED", "Scheduled", "Waiting for its scheduled send time."),
    ("QUEUED", "Queued", "Accepted and queued by the provider."),
    ("PROCESSING", "Processing", "Being prepared by the provider."),
    ("SUBMITTED", "Submitted", "Accepted by the provider for delivery."),
    ("BUFFERED", "Buffered", "Held on the way; delivery will be retried."),
    ("SENT", "Sent", "Handed to the carrier; waiting for a delivery report."),
]:
    _add(_st, "smsmon", N, _t, _m + " Still in flight.", ["Normal lifecycle step."], "Nothing to do yet.", R.NA, P.NO, G.PROVIDER)
_add("UNCONFIRMED", "smsmon", N, "Sent, unconfirmed",
     "Sent, but no delivery report will come (Eazita SENT). Soft-final: a later report may still replace it.",
     ["Route without delivery reports."], "Treat as probably delivered; confirm with the recipient if it matters.",
     R.NA, P.UNKNOWN, G.CARRIER)
_add("EXPIRED", "smsmon", N, "Expired",
     "The message expired. From Zeckta it is final (validity period over); from Eazita it only means no status came in time, and a late report may still arrive.",
     ["Handset unreachable for long.", "Carrier not reporting."], "See the provider's entry for this status.",
     R.LATER, P.UNKNOWN, G.RECIPIENT)
for _st, _t in [("REJECTED", "Rejected"), ("UNDELIVERABLE", "Undeliverable"), ("FAILED", "Failed")]:
    _add(_st, "smsmon", N, _t, f"{_t} by the provider or carrier. Final: the message will not be delivered.",
         ["See the provider's status and the error code."], "Read the provider's entry and error code, fix the cause, resend.",
         R.AFTER_FIX, P.UNKNOWN, G.UNKNOWN)
_add("DELIVERED", "smsmon", N, "Delivered", "Delivered to the handset. Final.", ["Success."], "Nothing to do.", R.NA, P.YES, G.RECIPIENT)
_add("UNKNOWN", "smsmon", N, "Unrecognized status",
     "A status smsmon does not know. It is stored with its raw value and never changes the message's current status.",
     ["The provider added a new status.", "A malformed or test event."],
     "Look at the raw payload; if the provider added a status, smsmon's mapping needs it.", R.NA, P.UNKNOWN, G.UNKNOWN)

# ── Flags ──────────────────────────────────────────────────────────────────────────
F = Kind.FLAG
_add("unmapped", "smsmon", F, "Unrecognized status",
     "The event's raw status is not in smsmon's mapping. The event is kept, and the message's status is not changed by it.",
     ["New or undocumented provider status."], "Read the raw payload.", R.NA, P.NO, G.UNKNOWN)
_add("regression_ignored", "smsmon", F, "Arrived out of order",
     "An earlier lifecycle step arrived after a later one (say SENT after SUBMITTED's successor). It is in the timeline but did not move the status back.",
     ["Callbacks are not delivered in order.", "A poll returned an older state."], "Nothing to do: this is normal.",
     R.NA, P.NO, G.PROVIDER)
_add("late_dlr", "smsmon", F, "Late delivery report",
     "A definitive result arrived after a provisional one (for example DELIVERED after Eazita's EXPIRED or SENT) and replaced it.",
     ["The carrier reported late."], "Nothing to do: the message now shows the definitive result.", R.NA, P.NO, G.CARRIER)
_add("late_event", "smsmon", F, "Event after the final status",
     "An event arrived after the message was already final and did not change it.",
     ["Out-of-order callbacks.", "A poll or the Status API returning an older state."], "Nothing to do.",
     R.NA, P.NO, G.PROVIDER)
_add("terminal_conflict", "smsmon", F, "Conflicting final statuses",
     "Two different definitive results were reported for the same message (say FAILED and DELIVERED). smsmon shows the latest by event time.",
     ["Multipart message with segments reported separately.", "Provider or carrier inconsistency."],
     "Check the timeline; ask the provider which result is right. For multipart messages a segment may have failed.",
     R.NA, P.UNKNOWN, G.PROVIDER)
_add("clock_skew", "smsmon", F, "Suspicious time",
     "The event's time is more than 10 minutes after smsmon received it (in the future), or its done time is before its sent "
     "time. An event from the future counts at the time smsmon received it when messages are ordered and filtered by time, "
     "so one bad clock cannot keep a message at the top; its own time is still shown and still decides between finals.",
     ["The provider's clock is off.", "Wrong time zone setting for Eazita (eazita.timezone)."],
     "Check the eazita.timezone setting and this machine's clock.", R.NA, P.NO, G.PROVIDER)
_add("stale", "smsmon", F, "No news for too long",
     "The message is not final and nothing has been heard about it for longer than the watch window (72 h by default).",
     ["Delivery report lost.", "Handset off for days."], "Ask the provider's status API, or treat as not delivered.",
     R.NA, P.UNKNOWN, G.UNKNOWN)

# ── Listener and poller failures ───────────────────────────────────────────────────
X = Kind.FAILURE
for _c, _t, _m, _causes, _a, _r, _g in [
    (Failure.INVALID_JSON, "Callback body is not JSON", "A callback's body could not be parsed as JSON; it was answered 400 and kept in dead letters.",
     ["Something other than Zeckta posted to the callback URL.", "Body truncated on the way."], "Look at the dead letter's body excerpt.", R.AFTER_FIX, G.PROVIDER),
    (Failure.INVALID_PAYLOAD, "Callback has the wrong shape", "The callback lacked a required field (eventId, eventType, timestamp, message.uuid) or had a wrong type; answered 400 and kept in dead letters.",
     ["Payload format changed.", "A test request."], "Compare the dead letter's body with the documented payload.", R.AFTER_FIX, G.PROVIDER),
    (Failure.BODY_TOO_LARGE, "Callback body too large", "A body over 64 KiB was refused with 413 without being read.",
     ["Not a Zeckta callback.", "Abuse of a public endpoint."], "Nothing to do unless real callbacks are affected.", R.NO, G.UNKNOWN),
    (Failure.BAD_TOKEN, "Wrong or missing callback token", "A request came to a callback path without the configured token; answered 404 and not stored.",
     ["The callback URL given to Zeckta lacks the token.", "Someone probing the endpoint."], "Give Zeckta the URL `smsmon serve` prints at start.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.METHOD_NOT_ALLOWED, "Wrong HTTP method", "Only POST is accepted on callback paths; answered 405.", ["A browser or a probe."], "Nothing to do.", R.NO, G.UNKNOWN),
    (Failure.FORBIDDEN_ADDRESS, "Address not allowed", "The request came from an address outside --allow-from; answered 403.", ["Provider IPs changed.", "A probe."], "Widen --allow-from if the provider's addresses changed.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.STORE_UNAVAILABLE, "Database unavailable", "The event could not be committed (database locked past its timeout, disk full or I/O error); answered 503 so the provider retries. Nothing was acknowledged.",
     ["Another process holds a long write lock.", "Disk full."], "Free disk space or stop the other writer; callbacks retried by the provider will then succeed.", R.LATER, G.UNKNOWN),
    (Failure.POLL_TIMEOUT, "Provider API timed out", "The provider did not answer in time. The poller backs off and retries.", ["Provider slow or down.", "Large report without a messageid filter."], "Nothing to do if it recovers; check the provider's status page if it lasts.", R.LATER, G.PROVIDER),
    (Failure.POLL_CONNECT_ERROR, "Cannot reach provider API", "The connection to the provider failed (DNS, refused, TLS).", ["No network.", "Wrong base URL setting."], "Check the network and the base URL setting.", R.LATER, G.PROVIDER),
    (Failure.POLL_AUTH, "Provider refused credentials", "The provider answered 401 or 403.", ["Wrong or revoked API key."], "Fix the API key in the settings.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.POLL_NOT_FOUND, "Provider answered 404", "The provider does not know the URL or the message.", ["Wrong base URL.", "Message id from another account."], "Check the base URL and the message id.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.POLL_HTTP_ERROR, "Provider refused the request", "The provider answered another 4xx status.", ["A request smsmon made wrongly.", "API changed."], "Report it with the status; smsmon may need an update.", R.AFTER_FIX, G.PROVIDER),
    (Failure.POLL_RATE_LIMITED, "Rate limited", "The provider answered 429; the poller waits for Retry-After before asking again.", ["Too many requests for the API key."], "Lengthen the poll interval if it happens often.", R.LATER, G.ACCOUNT),
    (Failure.POLL_SERVER_ERROR, "Provider server error", "The provider answered 5xx. The poller backs off and retries.", ["Outage at the provider."], "Wait; report it if it lasts.", R.LATER, G.PROVIDER),
    (Failure.POLL_HTML_BODY, "Provider answered HTML", "The provider answered an HTML page instead of JSON (an error page, a captive portal, a maintenance page).", ["Outage or maintenance.", "Wrong base URL."], "Check the base URL; wait if the provider is down.", R.LATER, G.PROVIDER),
    (Failure.POLL_INVALID_JSON, "Provider answered invalid JSON", "The provider's answer could not be parsed as JSON.", ["Truncated answer.", "Provider bug."], "Wait for the next poll; report it if it repeats.", R.LATER, G.PROVIDER),
    (Failure.POLL_BAD_SHAPE, "Provider answer has the wrong shape", "The answer was JSON but not in the documented shape.", ["API changed."], "Report it; smsmon may need an update.", R.LATER, G.PROVIDER),
    (Failure.POLL_API_ERROR, "Provider API returned an error", "The API answered with an error envelope (Eazita `code` other than 1). Its code has its own entry.", ["See the API code."], "Run `smsmon explain <code> --provider eazita`.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.STORE_GONE, "Database file removed or replaced", "The database file that `smsmon serve` (or `watch`) was writing was removed, replaced by another file, or truncated while it ran. From that moment nothing is acknowledged (callbacks get 503, so the provider retries) and nothing is written, so that no event lands in a file that is no longer at the path and the old write-ahead log is never applied to another file.",
     ["The file was deleted or moved by hand or by a clean-up job.", "A backup was restored over it while smsmon ran.", "A disk or mount problem."], "Put the right file at the path and restart smsmon; callbacks answered 503 meanwhile are retried by the provider. Events acknowledged before the change are in the file that stood at the path then.", R.AFTER_FIX, G.UNKNOWN),
    (Failure.STORE_DAMAGED, "Database file damaged", "SQLite found the database file damaged (or not a database at all). smsmon neither reads nor writes it further.",
     ["A crash of the disk or the machine with a cache that lies about flushing.", "The file was copied while it was being written.", "It is not an smsmon database."], "Recover what can be read into a new file with `sqlite3 FILE \".recover\" | sqlite3 NEW.db`, then point smsmon at the new file.", R.AFTER_FIX, G.UNKNOWN),
    (Failure.BODY_TIMEOUT, "Callback body too slow", "A request's body did not arrive whole within 5 seconds; answered 408 and the connection closed. Nothing stored.",
     ["A very slow or broken network between the sender and smsmon.", "A slow-sending attack holding connections open."], "Nothing to do unless real callbacks are affected; then look at the network path.", R.LATER, G.UNKNOWN),
    (Failure.BAD_TRANSFER, "Callback body could not be decoded", "The body's transfer could not be decoded (a Content-Encoding such as gzip that the bytes are not in, or broken chunked framing); answered 400. There was no readable body to keep as a dead letter.",
     ["A sender that labels its body wrongly.", "A proxy that altered the body."], "Check what sits between the sender and smsmon; real Zeckta callbacks are plain JSON.", R.AFTER_FIX, G.UNKNOWN),
    (Failure.TOO_MANY_CONNECTIONS, "Too many connections", "The listener held as many connections as it allows (below the open-file limit) when another came: it closed the one idle longest (or reading a body longest) to make room, or, when every connection was waiting for the database, answered 503.",
     ["Many idle or slow connections: a flood or a misbehaving client.", "A low open-file limit (`ulimit -n`)."], "Raise the open-file limit if real traffic needs more; otherwise nothing: real callbacks still get through.", R.LATER, G.UNKNOWN),
    (Failure.OVERLOADED, "Listener overloaded", "Over 2,000 callbacks were already waiting for the database; answered 503 with Retry-After at once, so memory stays bounded. Nothing was acknowledged.",
     ["A burst faster than the disk can commit.", "The database locked by another process for long."], "Nothing to do if it passes: the provider retries. If it lasts, look at the disk and at other processes using the database.", R.LATER, G.UNKNOWN),
    (Failure.INTERNAL_ERROR, "smsmon internal error", "A bug in smsmon while answering a request; answered 503 so the sender retries and nothing is lost. The log has the details once.",
     ["A bug in smsmon."], "Report it with the log line (secrets are masked in it).", R.LATER, G.UNKNOWN),
]:
    _add(_c.value, "smsmon", X, _t, _m, _causes, _a, _r, P.NO, _g)

# Pollers, issue 9: answers a provider should never give, and smsmon's own bugs.
for _c, _t, _m, _causes, _a, _r, _g in [
    (Failure.POLL_REDIRECT, "Provider answered with a redirect",
     "The provider answered 3xx, pointing somewhere else. smsmon does not follow redirects, so the credentials never travel to a host you did not configure; the error names the host it pointed to.",
     ["The base URL setting is out of date (http instead of https, an old host name).", "A proxy or captive portal in the way."],
     "Set the provider's URL setting (eazita.url, zeckta.url) to where the API really is, if you trust that host.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.POLL_UNDECODABLE, "Provider answer cannot be decoded",
     "The answer said it was compressed (gzip or deflate) but could not be inflated, or used a compression smsmon did not ask for. Nothing in it was read.",
     ["A broken proxy or server.", "The answer was cut short on the way."], "Wait for the next poll; report it to the provider if it repeats.",
     R.LATER, G.PROVIDER),
    (Failure.POLL_TOO_LARGE, "Provider answer too large",
     "The answer was larger than smsmon reads (32 MB for Eazita's reports, 64 KB for a Zeckta status), counted after decompression, so a compression bomb cannot exhaust memory. Nothing in it was stored.",
     ["A compression bomb, or a server gone wrong.", "An account log far larger than any poll should see."],
     "If the answer was genuine, poll more often so that each report is smaller; otherwise report it to the provider.",
     R.LATER, G.PROVIDER),
    (Failure.POLL_INTERNAL, "Poller failed unexpectedly",
     "Something went wrong inside smsmon's poller: a bug, not the provider's fault. The poller recorded the failure, keeps running and tries again after a backoff.",
     ["A bug in smsmon, triggered by an unusual answer or setting."],
     "Report it with the error text (it never contains credentials); set SMSMON_DEBUG=1 for more detail.", R.LATER, G.UNKNOWN),
]:
    _add(_c.value, "smsmon", X, _t, _m, _causes, _a, _r, P.NO, _g)

# Alerts, issue 14: where a notice could not go.
for _c, _t, _m, _causes, _a, _r, _g in [
    (Failure.ALERT_WEBHOOK_FAILED, "Alert webhook failed",
     "An alert's notice (its start or its end) could not be POSTed to alerts.webhook: the receiver refused it, or did not "
     "answer through every retry (six attempts over about half a minute). The alert itself still fires: the log, the app's "
     "banner, `smsmon alerts` and /metrics show it.",
     ["The receiver is down or unreachable from here.", "The webhook URL is wrong or was revoked (a 404 or 403 is not retried).",
      "Over 1,000 notices waited at once and the oldest was dropped."],
     "Check the webhook URL (`smsmon config` shows only its length) and that this host can reach it; `smsmon alerts` shows what "
     "fires now.", R.LATER, G.UNKNOWN),
    (Failure.ALERT_COMMAND_FAILED, "Alert command failed",
     "The command in alerts.command could not be started, exited with a status other than 0, or ran longer than 30 seconds and "
     "was stopped. It is not run again for the same notice.",
     ["The program is not installed or not on PATH.", "It failed: its first line of error output is in the log."],
     "Run the command by hand with a notice on its standard input: `smsmon alerts --json` shows the figures it would get.",
     R.AFTER_FIX, G.UNKNOWN),
]:
    _add(_c.value, "smsmon", X, _t, _m, _causes, _a, _r, P.NO, _g)

# The listener's wrong paths, and the forwarder (issue 13): each failed relay is retried with backoff until a 2xx.
_RELAY = "The callback stays in the outbox and is relayed again after an exponential backoff with jitter (up to 5 minutes), until the target answers 2xx; `smsmon forward status` lists what waits."
for _c, _t, _m, _causes, _a, _r, _g in [
    (Failure.NOT_FOUND, "No such path", "A request came to a path the listener does not serve (with no callback token set, only /callbacks/zeckta takes callbacks); answered 404 and not stored.",
     ["The callback URL given to Zeckta has a typo or a path a proxy did not strip.", "Someone probing the endpoint."], "Give Zeckta the URL `smsmon serve` prints at start; behind a proxy, check that it passes the path unchanged.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.FORWARD_CONNECT_ERROR, "Forward target unreachable", "The target of --forward-to could not be reached (connection refused, no route, DNS, TLS). " + _RELAY,
     ["Your application is down or restarting.", "A wrong host or port in --forward-to."], "Start the application or fix the URL; nothing is lost meanwhile.", R.LATER, G.ACCOUNT),
    (Failure.FORWARD_TIMEOUT, "Forward target too slow", "The target of --forward-to did not answer within forward.timeout. " + _RELAY,
     ["Your application is overloaded or stuck.", "It does slow work before answering."], "Answer webhooks quickly (queue the work) or raise forward.timeout.", R.LATER, G.ACCOUNT),
    (Failure.FORWARD_REDIRECT, "Forward target redirected", "The target answered 3xx; smsmon does not follow redirects with callbacks. " + _RELAY,
     ["http:// where the application wants https://, or a missing trailing slash."], "Point --forward-to at the URL the redirect names.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.FORWARD_REJECTED, "Forward target refused the callback", "The target answered 4xx. " + _RELAY,
     ["Your application rejects this payload (a bug, or a check it fails).", "A wrong path or a missing credential in --forward-to."], "Fix the application or the URL; the callback is relayed again meanwhile.", R.AFTER_FIX, G.ACCOUNT),
    (Failure.FORWARD_SERVER_ERROR, "Forward target failed", "The target answered 5xx. " + _RELAY,
     ["A bug or an outage in your application."], "Look at the application's log; nothing is lost meanwhile.", R.LATER, G.ACCOUNT),
    (Failure.FORWARD_INTERNAL, "Forwarder failed unexpectedly", "Something went wrong inside smsmon's forwarder: a bug. " + _RELAY,
     ["A bug in smsmon."], "Report it with the error text (the target's URL is masked in it).", R.LATER, G.UNKNOWN),
]:
    _add(_c.value, "smsmon", X, _t, _m, _causes, _a, _r, P.NO, _g)

ENTRIES: tuple[Entry, ...] = tuple(_E)
_INDEX: dict[tuple[str, str], list[Entry]] = {}
for _entry in ENTRIES:
    _INDEX.setdefault((_entry.provider, _entry.code.upper()), []).append(_entry)

# GSM MAP error numbers (3GPP TS 29.002) that Eazita may pass through in error_code, as the
# field's older name `gsmerror` suggests. Used only to hint at the meaning of unrecognized codes.
GSM_MAP_HINTS: dict[str, str] = {
    "1": "unknown subscriber (the number does not exist)",
    "5": "unidentified subscriber",
    "6": "absent subscriber for SMS (phone off or out of coverage)",
    "8": "roaming not allowed",
    "9": "illegal subscriber",
    "11": "teleservice not provisioned (the line cannot receive SMS)",
    "12": "illegal equipment",
    "13": "call barred",
    "21": "facility not supported",
    "27": "absent subscriber (phone off or out of coverage)",
    "31": "subscriber busy for MT SMS",
    "32": "SMS delivery failure (memory full or handset error)",
    "34": "system failure in the network",
    "36": "unexpected data value",
}

_NUMERIC = re.compile(r"^[+-]?\d+$")


def _canonical(code: str) -> str:
    code = code.strip()
    if _NUMERIC.match(code):
        return str(int(code))
    return code


def lookup(code: str, provider: str | None = None) -> list[Entry]:
    """Every entry for `code`: a raw status (any case, Zeckta `MESSAGE_X` too), an error or API
    code, a normalized status, a flag or a failure. Provider entries come first; smsmon's own
    normalized entry is given only when no provider entry matched (or provider="smsmon")."""
    code = _canonical(code)
    providers = [provider] if provider else ["zeckta", "eazita", "smsmon"]
    found: list[Entry] = []
    for p in providers:
        key = raw_key(p, code) if p != "smsmon" else code.upper()
        for cand in {key, code.upper()}:
            for entry in _INDEX.get((p, cand), []):
                if entry not in found:
                    found.append(entry)
    if provider is None and any(e.provider != "smsmon" for e in found):
        found = [e for e in found if not (e.provider == "smsmon" and e.kind is Kind.NORMALIZED)]
    return found


def unrecognized(code: str, provider: str | None = None) -> Entry:
    """The entry shown for a code no provider documents (for example Eazita error_code "8")."""
    code = _canonical(code)
    hint = GSM_MAP_HINTS.get(code) if (provider in (None, "eazita") and _NUMERIC.match(code)) else None
    meaning = f"{code!r} is not a code {provider or 'either provider'} documents."
    causes = ["The provider passed through a code from the network, or added a new code."]
    sureness = "unknown"
    if hint:
        meaning += (f" Eazita's error_code was once named `gsmerror`, so it may be a GSM MAP error passed through from the "
                    f"network; in GSM MAP numbering {code} means {hint}.")
        causes = [f"Possibly: {hint} (GSM MAP, inferred)."] + causes
        sureness = "inferred"
    return Entry(code, provider or "unknown", Kind.ERROR_CODE, f"Unrecognized code {code}", meaning, tuple(causes),
                 "Look at the message's status and network; if the code repeats, ask the provider what it means.",
                 R.NA, P.UNKNOWN, G.UNKNOWN, sureness, None, recognized=False)


def explain(code: str, provider: str | None = None) -> list[Entry]:
    """`lookup()`, falling back to one unrecognized entry: never empty."""
    return lookup(code, provider) or [unrecognized(code, provider)]


def suggest(code: str, provider: str | None = None, n: int = 3) -> list[str]:
    """The known codes closest to a code nobody documents (`DELIVERD` -> DELIVERED), best first."""
    import difflib

    known = dict.fromkeys(e.code for e in ENTRIES if provider in (None, e.provider))
    by_upper = {k.upper(): k for k in known}
    return [by_upper[m] for m in difflib.get_close_matches(code.strip().upper(), list(by_upper), n=n, cutoff=0.6)]


# Eazita's error code 0 means "no error"; on a message that failed it can only mean that no code was given.
NO_CODE_GIVEN = Entry(
    "0", "eazita", Kind.ERROR_CODE, "No code given",
    "Eazita sent error code 0 (its \"no error\") with a message that did not arrive: it gave no reason for the failure. "
    "The message's status says what happened; its explanation is the one to follow.",
    ("Eazita fills in error_code for some failures only (NOT_ALLOWED and REJECTED rows often carry 0).",),
    "Go by the status's explanation; if many failures carry no code, ask Eazita for the reason with a few message ids.",
    R.NA, P.UNKNOWN, G.UNKNOWN, "inferred")


def explain_error(provider: str, error_code: str | None, *, failed: bool = False) -> Entry | None:
    """The entry for a message's error code, or None when there is no code. `failed`: the
    message was not delivered, so a code that means "no error" means "no code given"."""
    if error_code is None:
        return None
    if failed and provider == "eazita" and _canonical(error_code) == "0":
        return NO_CODE_GIVEN
    found = [e for e in lookup(error_code, provider) if e.kind is Kind.ERROR_CODE]
    return found[0] if found else unrecognized(error_code, provider)


def explain_status(provider: str, raw_status: str | None) -> Entry:
    found = [e for e in lookup(raw_status or "", provider) if e.kind is Kind.STATUS]
    if found:
        return found[0]
    return lookup("UNKNOWN", "smsmon")[0]


def outcome_for(entry: Entry) -> str | None:
    return outcome_of(entry.provider, Status(entry.normalized)).value if entry.normalized else None
