"""Insights over a period: delivery rate and time to deliver over time (charts with axes),
failures by status and error code (explained), failure rates by network and country (failed ÷
finished, with the counts), cost per day and per network, stale messages.

Every table row that counts messages opens exactly those messages (enter; esc comes back here):
the read model gives each row its filter, and the messages screen shows it in the filter
language. The period is the filter's since:/until: when it has them, else the last 24 hours
(w: 1 h, 24 h, 7 days)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from smsmon.ui.widgets.plain_table import PlainTable

from smsmon import catalogue, filters
from smsmon.filters import Filter
from smsmon.lifecycle import MAPPING
from smsmon.normalize import country_name
from smsmon.present import CURRENCY_NOTE, plural
from smsmon.store import stats as figures
from smsmon.timeutil import UTC_ZONE, DisplayZone, human_duration
from smsmon.ui.format import partial_figures
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen
from smsmon.ui.widgets.charts import draw_latency, draw_rate, make_plot

PERIODS = (("24h", timedelta(hours=24), "the last 24 hours"), ("7d", timedelta(days=7), "the last 7 days"),
           ("1h", timedelta(hours=1), "the last hour"))
SIDE_BY_SIDE = 120  # columns from which the two charts stand side by side


def status_meaning(provider: str, status: str) -> str:
    """A normalized status in the provider's words: its raw statuses and the first one's title."""
    raws = [raw for raw, st in MAPPING.get(provider, {}).items() if st.value == status]
    if not raws:
        return catalogue.explain_status(provider, status).title
    named = "" if raws == [status] else f" ({', '.join(raws)})"
    return catalogue.explain_status(provider, raws[0]).title + named


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


class InsightsScreen(SubScreen):
    BINDINGS = [Binding("w", "period", "Period")]

    class Open(Message):
        """Enter on a row: show these messages (a filter), or this message (an id)."""

        def __init__(self, title: str, expression: str = "", message_id: str = "") -> None:
            super().__init__()
            self.title = title
            self.expression = expression
            self.message_id = message_id

    def __init__(self, gateway: Gateway, flt: Filter, window: timedelta, clock: Callable[[], datetime], *,
                 zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.zone = zone
        self.gateway = gateway
        self.filter = flt
        self.window = window
        self.clock = clock
        self.period = 0
        self.data: dict[str, Any] | None = None
        self._loading: object | None = None  # the load in progress (load()), None once the screen has gone
        self._stale_found: dict[str, Any] | None = None
        self._reading: object | None = None  # the worker reading the period now (read_failed)
        self._workers: list[Any] = []  # the reads it started that may still run (cancelled when it goes)
        self.targets: dict[str, list[tuple[str, str, str]]] = {}  # table id -> per row (title, expression, message id)

    def compose(self) -> ComposeResult:
        yield from self.header()
        with VerticalScroll(id="insights-scroll"):
            yield Static("loading …", id="insights-head")
            with Horizontal(id="charts"):
                with Vertical(classes="chart"):
                    yield make_plot("rate-chart")
                    yield Static("", id="rate-caption", classes="caption")
                with Vertical(classes="chart"):
                    yield make_plot("latency-chart")
                    yield Static("", id="latency-caption", classes="caption")
            for name in ("by-status", "by-code", "by-network", "by-country", "cost-network", "cost-day", "stale"):
                yield Static("", id=f"{name}-title", classes="table-title")
                yield PlainTable(id=name, cursor_type="row", zebra_stripes=True, classes="insight")
            yield Static(f"Costs are as the providers give them (Eazita's price, Zeckta's cost): {CURRENCY_NOTE},"
                         " so the two providers' amounts are never added together.", id="cost-note")
        yield from self.footer()

    def on_mount(self) -> None:
        self.load()
        self._fit(self.size.width)

    def on_resize(self, event: Any) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        self.query_one("#charts").set_class(width < SIDE_BY_SIDE, "-stacked")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "period":
            return not (self.filter.since or self.filter.until)  # the filter's own period rules
        return True

    def load(self) -> None:
        """Read the period. Under a filter the aggregates cannot answer (a number, free text, a
        flag), the figures come from the messages themselves: of the newest RAW_FIRST at once (a
        few tens of ms at 10M events), then of the newest RAW_LIMIT (0.5 s under a number prefix,
        1 s under free text), as the summary line counts them."""
        name, period, words = PERIODS[self.period]
        now = self.clock()
        self.sub_title = "insights, " + (f"filter: {self.filter.source}" if self.filter.source else words)
        self.query_one("#insights-head", Static).update(f"loading {words} …")
        flt = self.filter
        self._loading = load = object()  # this load: what a slower read of an earlier one must not overwrite
        self._stale_found = None

        def then(d: dict[str, Any]) -> None:
            if self._gone() or self._loading is not load:
                return
            if self._stale_found is not None:  # the second look: the stale messages were read already
                d.update(self._stale_found)
            first_look = self.data is None or self.data.get("load") is not load
            d["load"] = load
            self._show(d)
            # Costs are read apart, after (under a filter no count answers, from the same messages).
            limit = d["limit"] if d["partial"] else None  # all of them: at most RAW_LIMIT
            self._read(lambda r: r.insights_costs(flt, period=period, now=now, limit=limit),
                       lambda c: self._show_costs(d, c), "insight-costs")
            if d["stale_count"] is None and first_look:  # a filter the aggregates cannot answer: counted apart, after
                self._read(lambda r: r.insights_stale(flt, now=now), lambda s: self._show_stale(load, s), "insight-stale")
            if d["partial"] and d["limit"] < figures.RAW_LIMIT:  # a first look: count on
                self._reading = self._read(
                    lambda r: r.insights_period(flt, period=period, now=now, limit=figures.RAW_LIMIT), then, "insights")

        self._reading = self._read(
            lambda r: r.insights_period(flt, period=period, now=now, limit=figures.RAW_FIRST), then, "insights")

    def _read(self, fetch: Callable[[Any], Any], then: Callable[[Any], None], group: str) -> Any:
        """A read of this screen's, the newest of its group winning; cancelled if the screen goes."""
        worker = self.gateway.read(fetch, then, group=group)
        self._workers = [w for w in self._workers if w.is_running] + [worker]
        return worker

    def _gone(self) -> bool:
        """Popped (it leaves the stack at once, its widgets a little later: a result arriving
        between the two found none to draw in, and ended the app), or unmounted."""
        return self._loading is None or self not in self.app.screen_stack

    def on_unmount(self) -> None:
        self._loading = None  # a look delivered after the screen has gone starts nothing more
        for worker in self._workers:  # and SQLite stops what it was reading for it (Reader.stoppable)
            worker.cancel()

    def action_period(self) -> None:
        self.period = (self.period + 1) % len(PERIODS)
        self.load()

    # ── drawing ──────────────────────────────────────────────────────────────
    def _show(self, d: dict[str, Any]) -> None:
        self.data = d
        self._head(d)
        hourly = d["bucket"] == "hour"
        self.query_one("#rate-caption", Static).update(draw_rate(self.query_one("#rate-chart"), d["series"], hourly))
        self.query_one("#latency-caption", Static).update(draw_latency(self.query_one("#latency-chart"), d["series"], hourly))
        self._tables(d)

    def _head(self, d: dict[str, Any]) -> None:
        t = d["totals"]
        since = self.zone.show(d["since"].isoformat(), seconds=False)
        until = self.zone.show(d["until"].isoformat(), seconds=False) if d["until"] else "now"
        self.query_one("#insights-head", Static).update(
            f"[b]{since} to {until}[/] ({self.zone.label}; messages by their latest event)   "
            f"{self._scope(d)} · delivery rate [b]{_pct(t['delivery_rate'])}[/] · time to deliver:"
            f" median {human_duration(t['median'])}, p90 {human_duration(t['p90'])}"
            + ("" if d["until"] or self.filter.since else "   [dim](w: another period)[/]"))

    def read_failed(self, worker: object) -> None:
        """A read failed (the app has said why). If it was this screen's read of its period, the
        screen stops saying it is loading, or counting on."""
        if self._gone() or worker is not self._reading:
            return
        if self.data is not None and self.data.get("load") is self._loading:  # the second look
            self.data["stopped"] = True
            self._head(self.data)
        else:
            self.query_one("#insights-head", Static).update(f"[$error]could not read {PERIODS[self.period][2]}[/]: see the message")

    @staticmethod
    def _scope(d: dict[str, Any]) -> str:
        """How many messages the figures are of: all of the period's, or (a filter only the
        messages themselves answer) the newest `limit` while it counts on, then the newest RAW_LIMIT."""
        if not d["partial"]:
            return plural(d["totals"]["messages"], "message")
        return partial_figures("newest", d["limit"], stopped=d.get("stopped", False))

    def _fill(self, name: str, title: str, columns: list[str], rows: list[tuple[list[Any], tuple[str, str, str] | None]],
              empty: str) -> None:
        self.query_one(f"#{name}-title", Static).update(f"[b]{escape(title)}[/]" + ("" if rows else f"\n[dim]{escape(empty)}[/]"))
        table = self.query_one(f"#{name}", DataTable)
        table.clear(columns=True)
        table.display = bool(rows)
        for c in columns:
            table.add_column(c, key=c)
        self.targets[name] = []
        for cells, target in rows:
            table.add_row(*cells)
            self.targets[name].append(target or ("", "", ""))

    def _tables(self, d: dict[str, Any]) -> None:
        expr = filters.expression
        self._fill("by-status", "Failures by status (enter lists them)", ["failed", "provider", "status", "meaning"],
                   [([f"{r['failed']:,}", r["provider"], r["status"], status_meaning(r["provider"], r["status"])],
                     (f"{r['provider']} {r['status']}", expr(r["filter"]), "")) for r in d["by_status"]],
                   "No failures in this period.")
        rows = []
        for r in d["by_code"]:
            e = catalogue.explain_error(r["provider"], r["code"], failed=True)
            rows.append(([f"{r['failed']:,}", r["provider"], r["code"] or "none",
                          e.title if e else "no code (Zeckta sends none)", e.action if e else "see failures by status"],
                         (f"{r['provider']} failures with code {r['code'] or 'none'}", expr(r["filter"]), "")))
        self._fill("by-code", "Failures by error code", ["failed", "provider", "code", "meaning", "what to do"], rows,
                   "No failures in this period.")
        for name, dim, label, show in (("by-network", "network", "network", lambda v: v or "not given by the provider"),
                                       ("by-country", "country", "country", country_name)):
            self._fill(name, f"Failure rate by {label}: failed ÷ finished (delivered + not delivered)",
                       ["failed", "finished", "failure rate", label, "unknown outcome", "in flight"],
                       [([f"{r['failed']:,}", f"{r['finished']:,}", _pct(r["rate"]), show(r[dim]), f"{r['unknown']:,}",
                          f"{r['in_flight']:,}"], (f"failures, {label} {show(r[dim])}", expr(r["filter"]), ""))
                        for r in d[f"by_{dim}"]], "No messages in this period.")
        for name, title in (("cost-network", "Cost by network"), ("cost-day", "Cost per day sent (UTC days)")):
            self._fill(name, title, [], [], "reading the prices and costs …")
        self._fill_stale(d)

    def _show_stale(self, load: object, found: dict[str, Any]) -> None:
        """The stale messages, read apart (a filter the aggregates cannot answer)."""
        if self._gone() or load is not self._loading:  # the screen has gone, or moved on to another period
            return
        self._stale_found = found  # kept for the second look at the period
        if self.data is not None and self.data.get("load") is load:
            self.data.update(found)
            self._fill_stale(self.data)

    def _fill_stale(self, d: dict[str, Any]) -> None:
        n = d["stale_count"]  # None: still being read apart
        counted = "counting …" if n is None else f"more than {n:,}" if d["stale_more"] else f"{n:,}"
        self._fill("stale", f"Stale messages: {counted}, not final and silent for {human_duration(self.window.total_seconds())}"
                   " (any time)", [f"last event ({self.zone.label})", "message", "status", "to"],
                   [([self.zone.show(m["last_event_at"], seconds=False), m["id"], m["status"], m["dest"] or ""],
                     (m["id"], "", m["id"])) for m in d["stale"] or []],
                   "No stale messages." if d["stale"] is not None else "")

    def _show_costs(self, shown: dict[str, Any], d: dict[str, Any]) -> None:
        """The costs of the figures on screen (`shown`): dropped when those have been replaced."""
        if self._gone() or shown is not self.data:
            return
        self.data.update(d)
        expr = filters.expression
        of = f" (of the newest {shown['limit']:,} messages only)" if d["costs_partial"] else ""
        self._fill("cost-network", "Cost by network" + of, ["cost", "priced", "of messages", "provider", "network"],
                   [([f"{r['cost']:,.3f}", f"{r['priced']:,}", f"{r['messages']:,}", r["provider"],
                      r["network"] or "not given by the provider"],
                     (f"{r['provider']} messages on {r['network'] or 'no network'}", expr(r["filter"]), ""))
                    for r in d["cost_by_network"]], "No prices or costs given in this period.")
        days: dict[str, dict[str, tuple[int, float]]] = {}
        for r in d["cost_by_day"]:
            days.setdefault(r["day"], {})[r["provider"]] = (r["priced"], r["cost"])
        self._fill("cost-day", "Cost per day sent (UTC days)" + of, ["day", "eazita price", "messages", "zeckta cost", "messages "],
                   [([day, *(x for p in ("eazita", "zeckta") for x in ((f"{v[p][1]:,.3f}", f"{v[p][0]:,}") if p in v else ("—", "")))],
                     None) for day, v in sorted(days.items(), reverse=True)], "No prices or costs given in this period.")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        targets = self.targets.get(str(event.data_table.id), [])
        if event.cursor_row < len(targets):
            title, expression, message_id = targets[event.cursor_row]
            if expression or message_id:
                self.post_message(self.Open(title, expression, message_id))
