"""Issue 12, the read side: the filter language's country: and none, written back exactly
(`expression`), and the insights read model, whose every row's filter selects exactly the
messages it counts. Real SQLite files and PostgreSQL schemas."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from smsmon import filters
from smsmon.errors import FilterError
from smsmon.sim.generate import fill
from smsmon.store import insights, queries
from smsmon.store.backend import open_reader
from smsmon.store.reader import Reader
from smsmon.timeutil import UTC

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def reader(module_db) -> Reader:
    fill(module_db, messages=600, seed=4, days=2, now=NOW)
    with open_reader(module_db) as r:
        yield r


@pytest.mark.parametrize("text", [
    'country:GH error:none network:"Ghana Telecom",none status:not_delivered since:24h 0241',
    "country:+92 provider:eazita dest:+23324* error:101,none flag:late_dlr until:2026-11-23",
    "status:open,failed,delivered network:Zong",
])
def test_a_filter_written_back_means_the_same(text) -> None:
    f = filters.parse(text, NOW)
    assert filters.parse(filters.expression(f), NOW + timedelta(hours=5)) == f  # absolute times: same later


def test_countries_by_iso_or_calling_code() -> None:
    assert filters.parse("country:GH", NOW).countries == filters.parse("country:+233", NOW).countries == ("233",)
    with pytest.raises(FilterError, match="country: unknown value 'XX'"):
        filters.parse("country:XX", NOW)


def test_none_selects_what_the_provider_left_out(reader) -> None:
    zeckta = reader.stats(filters.parse("provider:zeckta", NOW), now=NOW).messages
    assert reader.stats(filters.parse("network:none", NOW), now=NOW).messages >= zeckta > 0  # Zeckta gives no network
    both = reader.stats(filters.parse("network:Zong,none", NOW), now=NOW).messages
    zong = reader.stats(filters.parse("network:Zong", NOW), now=NOW).messages
    assert both == zong + reader.stats(filters.parse("network:none", NOW), now=NOW).messages
    assert reader.stats(filters.parse("country:233", NOW), now=NOW).messages == zeckta  # Ghana: Zeckta's numbers


@pytest.mark.parametrize("period", [timedelta(hours=1), timedelta(hours=24), timedelta(days=7)])
def test_every_insights_row_opens_exactly_what_it_counts(reader, period) -> None:
    d = reader.insights_period(filters.Filter(), period=period, now=NOW)
    rows = d["by_status"] + d["by_code"] + d["by_network"] + d["by_country"]
    for row in rows:
        again = filters.parse(filters.expression(row["filter"]), NOW)  # through the language, as the app opens it
        assert reader._run(queries.count, reader.localize(again), now=NOW) == row["failed"], row
    for row in reader.insights_costs(filters.Filter(), period=period, now=NOW)["cost_by_network"]:
        assert reader._run(queries.count, reader.localize(row["filter"]), now=NOW) == row["messages"], row
    if period == timedelta(hours=24):
        assert rows and sum(r["failed"] for r in d["by_status"]) == d["totals"]["outcomes"].get("NOT_DELIVERED", 0)
        assert all(r["rate"] == r["failed"] / r["finished"] for r in d["by_network"] if r["finished"])


def test_insights_keep_the_users_filter_and_its_own_period(reader) -> None:
    f = filters.parse("provider:eazita since:2026-11-23T06:00:00Z", NOW)
    d = reader.insights_period(f, period=timedelta(hours=24), now=NOW)
    assert d["since"] == f.since and d["bucket"] == "hour" and len(d["series"]) == 7
    assert {r["provider"] for r in d["by_code"]} <= {"eazita"}
    assert all(r["filter"].providers == ("eazita",) for r in d["by_network"])


def test_costs_are_never_added_across_providers(reader) -> None:
    d = reader.insights_costs(filters.Filter(), period=timedelta(days=7), now=NOW)
    pairs = [(r["day"], r["provider"]) for r in d["cost_by_day"]]
    assert len(pairs) == len(set(pairs))  # one line per provider and day, never a sum of both
    assert {r["provider"] for r in d["cost_by_day"]} == {"eazita", "zeckta"}
    assert all(r["priced"] <= r["messages"] for r in d["cost_by_network"])


def test_the_insights_header_counts_the_period(reader) -> None:
    d = reader.insights_period(filters.Filter(), period=timedelta(hours=24), now=NOW)
    count = reader._run(queries.count, filters.Filter(since=d["since"]), now=NOW)
    assert d["totals"]["messages"] == count


def test_stale_messages_of_a_filter_the_counts_cannot_answer_are_counted_apart_up_to_a_bound(reader, module_db,
                                                                                            monkeypatch) -> None:
    """Under a number prefix the stale messages are counted apart from the rest of the screen (at
    10M events counting them took 4.2 s), one by one up to STALE_COUNTED, saying there are more;
    from the aggregates (a provider) the count comes with the rest, exact however large."""
    from smsmon.store import insights

    period = timedelta(days=2)
    prefix = filters.parse("dest:+233*", NOW)
    with open_reader(module_db, window=timedelta(hours=1)) as short:  # silent for an hour: stale
        screen = short.insights_period(prefix, period=period, now=NOW)
        assert screen["stale_count"] is None and screen["stale"] is None  # read apart
        apart = short.insights_stale(prefix, now=NOW)
        assert apart["stale_count"] > 3 and not apart["stale_more"] and apart["stale"]
        assert all(m["stale"] and m["dest"].startswith("+233") for m in apart["stale"])
        monkeypatch.setattr(insights, "STALE_COUNTED", 3)
        capped = short.insights_stale(prefix, now=NOW)
        assert (capped["stale_count"], capped["stale_more"], capped["stale"]) == (3, True, apart["stale"])
        by_provider = short.insights_period(filters.parse("provider:zeckta", NOW), period=period, now=NOW)
        assert by_provider["stale_count"] > 3 and not by_provider["stale_more"] and by_provider["stale"]
        assert short.insights_stale(filters.parse("provider:zeckta", NOW), now=NOW)["stale_count"] == by_provider["stale_count"]


def _every_message(conn, fp, now, window):  # type: ignore[no-untyped-def]
    """The costs of a period read from every one of its messages (the reference)."""
    rows, partial = insights._read_costs(conn, fp, now, window, 10**9)
    assert not partial
    return rows


def _costs(d: dict) -> tuple[dict, dict]:
    by_day = {(r["day"], r["provider"]): (r["priced"], r["cost"]) for r in d["cost_by_day"]}
    by_network = {(r["provider"], r["network"]): (r["priced"], r["messages"], r["cost"]) for r in d["cost_by_network"]}
    return by_day, by_network


@pytest.mark.parametrize("text", [
    "", "provider:eazita", "status:failed network:Zong,none", "country:GH", "status:open", "status:stale",
    "error:none", "since:2026-11-22T07:25:00Z", "provider:zeckta since:2026-11-22T13:40:30Z until:2026-11-23T09:10:00Z",
])
@pytest.mark.parametrize("period", [timedelta(hours=1), timedelta(hours=24), timedelta(days=7)])
def test_costs_from_the_counts_equal_the_costs_of_the_messages(reader, monkeypatch, text, period) -> None:
    """Issue 11: a filter the aggregates answer reads its costs from agg_cost_hour (and the
    minutes at the edges of its period from the messages): the same figures as reading every
    message of the period, to the millionth."""
    f = filters.parse(text, NOW)
    counted = _costs(reader.insights_costs(f, period=period, now=NOW))
    monkeypatch.setattr(insights, "_counted_costs", _every_message)  # the reference: every message read
    read = _costs(reader.insights_costs(f, period=period, now=NOW))
    for got, want in zip(counted, read):
        assert got.keys() == want.keys()
        for key, values in want.items():
            assert got[key][:-1] == values[:-1], key  # the counts
            assert got[key][-1] == pytest.approx(values[-1], abs=1e-6 * values[0]), key  # the cost
    if text == "" and period == timedelta(days=7):
        assert counted[0] and counted[1]  # something was compared


def test_a_cost_that_is_no_price_is_stored_and_left_out_of_the_costs(db, monkeypatch) -> None:
    """What a stranger (or a broken provider) sends as a cost, however large, is stored with its
    message and never fails a commit; the costs add up only prices below COST_LIMIT, read from
    the counts or from the messages alike."""
    from smsmon.store import aggregates
    from smsmon.store.backend import open_writer
    from tests.helpers import NOW as AT, zevent

    odd = [1e308, 2.0 ** 64, 1e13, -1e13, float(aggregates.COST_LIMIT)]
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_DELIVERED", uuid=f"odd-{i}", event_id=f"o{i}", cost=c) for i, c in enumerate(odd)])
        w.apply([zevent("MESSAGE_DELIVERED", uuid="fair", event_id="f1", cost=0.0125)])
        w.apply([zevent("MESSAGE_FAILED", uuid=f"odd-{i}", event_id=f"p{i}", cost=c) for i, c in enumerate(odd)])
    with open_reader(db) as r:
        assert r.stats(None).messages == len(odd) + 1
        counted = r.insights_costs(filters.Filter(), period=timedelta(hours=24), now=AT)
        monkeypatch.setattr(insights, "_counted_costs", _every_message)
        read = r.insights_costs(filters.Filter(), period=timedelta(hours=24), now=AT)
    for d in (counted, read):
        assert [(row["priced"], row["cost"]) for row in d["cost_by_day"]] == [(1, pytest.approx(0.0125))]
        assert [(row["priced"], row["messages"]) for row in d["cost_by_network"]] == [(1, len(odd) + 1)]


def test_insights_under_a_number_prefix_read_at_most_a_limit_of_its_messages_and_say_so(reader) -> None:
    """Issue 11: under a filter no count answers, the insights screen reads the period's
    messages themselves; a week under a prefix that matches a third of 10M events read 365k of
    them (1.4 s, and its costs 1.1 s). Now at most `limit`, and the figures say when there were
    more; under the limit they are every message's."""
    from smsmon.store import stats

    period, r = timedelta(hours=24), reader
    f = filters.parse("dest:+233*", NOW)
    whole = r.insights_period(f, period=period, now=NOW)
    matching = r._run(queries.count, r.localize(whole["filter"]), now=NOW)
    assert matching > 60 and not whole["partial"]
    assert whole["totals"]["messages"] == matching
    assert whole["limit"] == stats.RAW_LIMIT
    capped = r.insights_period(f, period=period, now=NOW, limit=50)
    assert capped["partial"] and capped["limit"] == 50
    assert capped["totals"]["messages"] == 50  # the newest 50 exactly: read them all, there may be more
    assert sum(b["delivered"] + b["failed"] for b in capped["series"]) <= 50
    # the newest: every hour after the first one read is whole, and the hours before it are left
    # out of the chart (not read, not empty)
    hours = {b["bucket"]: (b["delivered"], b["failed"]) for b in whole["series"]}
    first, *after = capped["series"]
    assert first["partial"] and after and len(capped["series"]) < len(whole["series"])
    assert [(b["delivered"], b["failed"]) for b in after] == [hours[b["bucket"]] for b in after]
    assert sum(d + f for d, f in hours.values()) > sum(b["delivered"] + b["failed"] for b in after)
    costs, capped_costs = (r.insights_costs(f, period=period, now=NOW, limit=n) for n in (None, 50))
    assert not costs["costs_partial"] and capped_costs["costs_partial"]
    assert sum(c["messages"] for c in capped_costs["cost_by_network"]) == 50
    assert sum(c["messages"] for c in costs["cost_by_network"]) <= matching
    counted = r.insights_period(filters.parse("provider:zeckta", NOW), period=period, now=NOW, limit=5)
    assert not counted["partial"] and counted["totals"]["messages"] > 5  # the counts answer it: no limit
