"""Pure domain code: timeline facts, formulas and periods (no I/O)."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metrics_service.domain import formulas, periods, timeline
from metrics_service.service_layer.currencies import parse_rates_csv
from salesflow_shared.errors import ValidationFailed


def row(event_id: str, kind: str, at: float, position: int | None = None, *, pipeline: str = "p1",
        ask: bool = False, value: str | None = None, prob: str | None = None) -> dict:
    return {"event_id": event_id, "kind": kind, "at_ts": at, "rank": timeline.TIE_RANK[kind], "pipeline_id": pipeline,
            "stage_id": f"s{position}" if position else None, "position": position, "is_ask": ask,
            "win_probability": Decimal(prob) if prob else None, "reason": None, "value": value,
            "currency": "USD" if value else None}


LOST_REOPENED_WON = [row("e1", "stage", 100, 1), row("e2", "stage", 200, 2, ask=True, prob="0.6"),
                     row("e3", "lost", 300), row("e4", "reopened", 400), row("e5", "stage", 400, 2, ask=True),
                     row("e6", "won", 500, value="70.00")]


def test_lead_facts_follow_time_not_arrival_order():
    expected = timeline.lead_facts(LOST_REOPENED_WON)
    assert expected["outcome"] == "won" and expected["closed_ts"] == 500
    assert expected["won_value"] == Decimal("70.00") and expected["reopen_count"] == 1
    assert expected["pipeline_entered_ts"] == 100 and expected["ask_entered_ts"] == 200
    assert (expected["first_position"], expected["max_position"], expected["current_stage_id"]) == (1, 2, "s2")
    for permutation in itertools.permutations(LOST_REOPENED_WON):
        assert timeline.lead_facts(list(permutation)) == expected


def test_a_reopened_lead_is_open_again_and_a_stay_ends_at_the_next_boundary():
    facts = timeline.lead_facts(LOST_REOPENED_WON[:4])
    assert facts["outcome"] == "open" and facts["closed_ts"] is None
    succ = timeline.successors(LOST_REOPENED_WON)
    assert succ["e2"][:2] == (300, "lost")      # the ask stay ended with the loss
    assert succ["e4"][:2] == (400, "stage")     # the reopening comes before the re-entry at the same time
    assert succ["e5"][:2] == (500, "won")
    assert succ["e6"] == (None, None, None, None)


def test_a_lead_without_stage_entries_has_no_pipeline_facts():
    facts = timeline.lead_facts([row("d", "disqualified", 50)])
    assert facts["pipeline_id"] is None and facts["outcome"] == "disqualified" and facts["closed_ts"] == 50


def test_median_and_nearest_rank_percentiles():
    assert formulas.median([]) is None
    assert formulas.median([5, 1, 3]) == 3
    assert formulas.median([4, 1, 3, 2]) == 2.5
    assert formulas.nearest_rank([2, 4], 90) == 4             # rank ceil(1.8) = 2
    assert formulas.nearest_rank([3, 5, 3], 75) == 5          # rank ceil(2.25) = 3
    assert formulas.nearest_rank(list(range(1, 11)), 90) == 9  # rank 9 of 10


def test_rates_accuracy_bias_and_pace():
    assert formulas.win_rate(3, 1) == 75.0
    assert formulas.win_rate(0, 0) is None
    assert formulas.pct(5, 7) == 71.43
    assert formulas.forecast_accuracy(Decimal(4100), Decimal(8600)) == 47.67
    assert formulas.forecast_accuracy(Decimal(10), Decimal(0)) is None
    assert formulas.forecast_bias(Decimal(4100), Decimal(8600)) == Decimal(-4500)
    assert formulas.pace(50.0, 14 / 91) == 325.0
    assert formulas.pace(10.0, 0.0) is None
    assert formulas.money(Decimal("2866.6666")) == "2866.67"


def test_calendar_periods():
    moment = datetime(2026, 5, 20, 13, tzinfo=UTC)
    assert periods.period_bounds("month", moment) == (datetime(2026, 5, 1, tzinfo=UTC),
                                                      datetime(2026, 6, 1, tzinfo=UTC))
    assert periods.period_bounds("quarter", moment) == (datetime(2026, 4, 1, tzinfo=UTC),
                                                        datetime(2026, 7, 1, tzinfo=UTC))
    assert periods.period_bounds("year", datetime(2026, 12, 31, tzinfo=UTC))[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert periods.period_bounds("quarter", datetime(2026, 11, 2, tzinfo=UTC))[1] == datetime(2027, 1, 1, tzinfo=UTC)
    quarters = periods.quarters_overlapping(datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 7, 2, tzinfo=UTC))
    assert [q[0].month for q in quarters] == [1, 4, 7]
    start, end = periods.period_bounds("quarter", moment)
    assert periods.elapsed_share(start, end, datetime(2026, 4, 15, tzinfo=UTC)) == 14 / 91
    assert periods.elapsed_share(start, end, datetime(2027, 1, 1, tzinfo=UTC)) == 1.0
    assert periods.day_number(86400 * 3 + 5) == 3
    assert periods.tiebreak(datetime(2026, 1, 1, tzinfo=UTC), "b") < periods.tiebreak(datetime(2026, 1, 1, 0, 0, 1,
                                                                                               tzinfo=UTC), "a")


def test_month_numbers_split_time_at_utc_month_starts():
    jan_1 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert periods.month_number(jan_1) == 2026 * 12 and periods.month_start_ts(2026 * 12) == jan_1
    assert periods.month_number(jan_1 - 0.25) == 2025 * 12 + 11  # a quarter second before belongs to December
    assert periods.month_number(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) == 2026 * 12 + 11
    # [Jan 15, Apr 1): February and March are whole, January is an edge
    assert periods.whole_months(datetime(2026, 1, 15, tzinfo=UTC).timestamp(),
                                datetime(2026, 4, 1, tzinfo=UTC).timestamp()) == (2026 * 12 + 1, 2026 * 12 + 3)
    assert periods.whole_months(jan_1, None) == (2026 * 12, None)
    # inside one month: no whole month
    first, end = periods.whole_months(jan_1 + 86400, jan_1 + 2 * 86400)
    assert first >= end


def test_percentile_cont_is_postgresqls_interpolation_and_nearest_rank_reads_sorted_values():
    assert formulas.percentile_cont([], 0.5) is None
    assert formulas.percentile_cont([4.0], 0.5) == 4.0
    assert formulas.percentile_cont([1.0, 2.0, 10.0], 0.5) == 2.0
    assert formulas.percentile_cont([1.0, 2.0, 3.0, 10.0], 0.5) == 2.5  # 2 + 0.5 × (3 − 2)
    assert formulas.percentile_cont([0.0, 10.0], 0.25) == 2.5
    values = [3.0, 3.0, 5.0]
    assert formulas.nearest_rank(values, 75, presorted=True) == formulas.nearest_rank(list(reversed(values)), 75) == 5.0


# ------------------------------------------------------------------ credit and currency conversion
def _assignment(owner: str, at: float, ver: int, trigger: str = "lead_created") -> dict:
    return {"owner_id": owner, "team_id": f"team-{owner}", "territory_id": None, "at_ts": at, "ver": ver,
            "tb": f"{at:020.3f}", "trigger": trigger}


def test_owner_at_a_moment_is_the_newest_assignment_until_then_and_a_win_never_counts_its_own_hand_over():
    from metrics_service.domain.timeline import current_owner, owner_at

    history = [_assignment("bob", 100.0, 1), _assignment("alice", 200.0, 2),
               _assignment("dave", 300.0, 3, trigger="lead_won")]
    assert owner_at(history, 150.0)[0] == "bob"
    assert owner_at(history, 50.0)[0] == "bob"  # before any assignment: the first one
    assert owner_at(history, 300.0)[0] == "dave"
    assert owner_at(history, 300.0, at_win=True)[0] == "alice"  # the hand-over the win triggered
    assert current_owner(history)[:2] == ("dave", "team-dave")
    assert owner_at([], 10.0) == (None, None, None)


def test_rates_convert_at_the_rate_in_force_that_day_inverse_pairs_too_and_name_what_has_none():
    from datetime import date
    from decimal import Decimal

    from metrics_service.domain.exchange import Converted, ExchangeRates, Rate

    rates = ExchangeRates([Rate("USD", "EUR", date(2026, 4, 1), Decimal("0.90")),
                           Rate("USD", "EUR", date(2026, 4, 10), Decimal("0.80"))])
    assert rates.convert(Decimal(100), "USD", "EUR", date(2026, 4, 9)).amount == Decimal("90.00")
    assert rates.convert(Decimal(100), "USD", "EUR", date(2026, 4, 10)).amount == Decimal("80.00")
    assert rates.convert(Decimal(100), "USD", "EUR", date(2026, 3, 31)) is None  # before the first rate
    assert rates.convert(Decimal(90), "EUR", "USD", date(2026, 4, 5)).amount == 100  # the inverse pair
    total = Converted("EUR")
    total.add(rates, "USD", "1000", date(2026, 4, 6))
    total.add(rates, "GBP", "500", date(2026, 4, 6))
    total.add(rates, "EUR", "1.25", date(2026, 4, 6))
    assert (total.amount, total.unconverted) == (Decimal("901.25"), {"GBP": Decimal("500")})
    assert total.by_currency == {"USD": Decimal("1000"), "GBP": Decimal("500"), "EUR": Decimal("1.25")}


def test_iso_4217_is_the_real_list():
    import pytest

    from salesflow_shared.currency import iso_currency

    assert iso_currency(" eur ") == "EUR"
    for bad in ("XYZ", "EURO", "E1R", ""):
        with pytest.raises(ValueError):
            iso_currency(bad)


def test_a_rates_file_with_a_lone_carriage_return_is_refused_by_row_not_a_500():
    header = "base_currency,quote_currency,rate,valid_from"
    # A lone CR ends a line, as LF and CRLF do: "E" and "UR,1.1,..." are two rows, both wrong.
    with pytest.raises(ValidationFailed) as refused:
        parse_rates_csv(f"{header}\nUSD,E\rUR,1.1,2026-01-01\n")
    assert {e.field for e in refused.value.errors} >= {"rows[1].quote_currency", "rows[2].base_currency"}
    assert [(r.base, r.quote, str(r.rate)) for r in parse_rates_csv(f"{header}\rUSD,EUR,1.1,2026-01-01\r")] == [
        ("USD", "EUR", "1.1")]
