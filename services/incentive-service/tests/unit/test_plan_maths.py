"""The plan maths, each component and the combinations of the issue, on examples computed by hand."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal as D

from incentive_service.domain.commissions import (
    Adjustment,
    Line,
    PlannedCredit,
    Quota,
    Reversal,
    StatementInput,
    Win,
    compute_statement,
    corrections,
    credits_for_win,
    recalculation_lines,
)
from incentive_service.domain.money import ExchangeRates, Rate, period_bounds
from incentive_service.domain.plans import PlanVersion, parse_plan, plan_for

Q1 = (date(2027, 1, 1), date(2027, 4, 1))


def plan(**fields) -> PlanVersion:
    doc = {"name": "AE", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
           "coverage": {"participants": ["ann", "bob", "sam", "mia"]}, "base_rate": "0.10"}
    doc.update(fields)
    return PlanVersion("p1", 1, parse_plan(doc))


def win(lead: str, value: str, day: int = 10, month: int = 2, currency: str = "EUR", closer: str = "ann",
        **extra) -> Win:
    return Win(f"ev-{lead}", lead, datetime(2027, month, day, 12, tzinfo=UTC), D(value), currency, closer, **extra)


def statement(version: PlanVersion, wins: list[Win], participant: str = "ann", quota: str | None = None,
              **extra):
    credits = [PlannedCredit(c, version) for w in wins for c in credits_for_win(w, version)
               if c.participant_id == participant]
    return compute_statement(StatementInput(participant, *Q1, version, credits,
                                            quota=Quota(D(quota), "EUR") if quota else None, **extra))


def amounts(result) -> list[tuple[str, D]]:
    return [(line.key.split(":")[0] if line.kind != "spiff" else "spiff", line.amount) for line in result.lines]


# ------------------------------------------------------------------ one component at a time
def test_base_rate_pays_each_deal_its_rate():
    result = statement(plan(), [win("a", "10000"), win("b", "5000", day=12)])
    assert [line.amount for line in result.lines] == [D("1000.00"), D("500.00")]
    assert result.total == D("1500.00")
    assert result.lines[0].rule == "base_rate" and result.lines[0].lead_id == "a"


TIERS = [{"from": "0", "to": "100", "rate": "0.05"}, {"from": "100", "to": None, "rate": "0.10"}]


def test_retroactive_tiers_pay_every_credit_at_the_band_reached():
    # 60,000 + 50,000 against a 100,000 quota: 110 %, so band 1 (10 %) from the first euro.
    result = statement(plan(tiers={"mode": "retroactive", "bands": TIERS}),
                       [win("a", "60000"), win("b", "50000", day=20)], quota="100000")
    assert [line.amount for line in result.lines] == [D("6000.00"), D("5000.00")]
    assert result.attainment_pct == D("110")
    assert {line.rule for line in result.lines} == {"tiers.bands[1]"}


def test_marginal_tiers_pay_each_slice_at_its_band():
    # First deal: 60,000 in band 0 at 5 % = 3,000. Second: 40,000 at 5 % (2,000) + 10,000 at 10 % (1,000).
    result = statement(plan(tiers={"mode": "marginal", "bands": TIERS}),
                       [win("a", "60000"), win("b", "50000", day=20)], quota="100000")
    assert [line.amount for line in result.lines] == [D("3000.00"), D("3000.00")]
    assert result.lines[1].rule == "tiers.bands[0],tiers.bands[1]"
    assert result.total == D("6000.00")


def test_a_cap_hit_mid_period_pays_the_crossing_deal_up_to_the_cap_and_nothing_after():
    # 10 %: 800, then 600 of which only 400 fit under the 1,200 cap, then 0.
    result = statement(plan(cap="1200"), [win("a", "8000", day=1), win("b", "6000", day=2), win("c", "3000", day=3)])
    assert [line.amount for line in result.lines] == [D("800.00"), D("400.00"), D("0.00")]
    assert result.lines[1].rule == "base_rate,cap" and result.total == D("1200")


def test_below_the_hurdle_nothing_is_paid_above_it_everything():
    below = statement(plan(hurdle="50"), [win("a", "30000")], quota="100000")
    assert [line.amount for line in below.lines] == [D("0")] and "below the hurdle" in below.lines[0].steps[-2]
    above = statement(plan(hurdle="50"), [win("a", "30000"), win("b", "30000", day=11)], quota="100000")
    assert [line.amount for line in above.lines] == [D("3000.00"), D("3000.00")]


def test_a_split_credits_each_participant_their_share():
    version = plan(credit={"splits": [{"to": "closer", "percent": "70"}, {"to": "sam", "percent": "30"}]})
    assert statement(version, [win("a", "10000")], "ann").total == D("700.00")
    assert statement(version, [win("a", "10000")], "sam").total == D("300.00")


def test_an_overlay_credits_the_team_manager_on_top_of_the_splits():
    version = plan(credit={"overlays": [{"participant": "mia", "teams": ["t1"], "percent": "50"}]})
    credits = credits_for_win(win("a", "10000", team_id="t1"), version)
    assert [(c.participant_id, c.kind, c.percent) for c in credits] == [("ann", "split", D("100")),
                                                                       ("mia", "overlay", D("50"))]
    assert statement(version, [win("a", "10000", team_id="t1")], "mia").total == D("500.00")
    assert statement(version, [win("b", "10000", team_id="t2")], "mia").lines == []


def test_spiffs_per_product_line_large_deal_and_new_logo_pro_rata_of_the_split():
    version = plan(credit={"splits": [{"to": "closer", "percent": "70"}, {"to": "sam", "percent": "30"}]},
                   spiffs=[{"name": "Cloud", "kind": "product_line", "product_line": "cloud", "amount": "500"},
                           {"kind": "large_deal", "min_value": "50000", "amount": "1000"},
                           {"kind": "new_logo", "amount": "250"}])
    result = statement(version, [win("a", "60000", product_line="cloud", new_logo=True)])
    # Commission 60,000 × 70 % × 10 % = 4,200; SPIFFs × 70 %: 350, 700, 175.
    assert [line.amount for line in result.lines] == [D("4200.00"), D("350.00"), D("700.00"), D("175.00")]
    assert [line.rule for line in result.lines[1:]] == ["spiffs[0]", "spiffs[1]", "spiffs[2]"]
    small = statement(version, [win("b", "40000", product_line="hardware")])
    assert [line.kind for line in small.lines] == ["commission"]


def test_a_clawback_within_the_days_takes_the_deal_out_and_after_them_it_stays():
    version = plan(clawback={"days": 30}, tiers={"mode": "retroactive", "bands": TIERS})
    reopened = Reversal("a", datetime(2027, 3, 1, tzinfo=UTC), "reopened")
    credits = [PlannedCredit(c, version) for c in credits_for_win(win("a", "60000"), version, reopened)]
    credits += [PlannedCredit(c, version) for c in credits_for_win(win("b", "50000", day=20), version)]
    result = compute_statement(StatementInput("ann", *Q1, version, credits, quota=Quota(D("100000"), "EUR")))
    # a is clawed back (19 days): attainment 50 %, so b is paid at 5 %.
    assert [(line.kind, line.amount) for line in result.lines] == [("clawback", D("0")), ("commission", D("2500.00"))]
    late = Reversal("a", datetime(2027, 3, 20, tzinfo=UTC), "reopened")  # 38 days: not a clawback
    credits[0] = PlannedCredit(replace(credits[0].credit, reversal=late), version)
    assert compute_statement(StatementInput("ann", *Q1, version, credits, quota=Quota(D("100000"), "EUR"))
                             ).total == D("11000.00")


def test_a_draw_is_recovered_over_three_periods():
    version = plan(draw={"amount": "1000", "recoverable": True})
    balance, figures = D("0"), []
    for earned in ("4000", "12000", "13000", "15000"):  # 10 %: 400, 1,200, 1,300, 1,500
        result = statement(version, [win("x", earned)], draw_balance_before=balance)
        balance = result.draw_balance_after
        figures.append((result.lines[-1].kind, result.lines[-1].amount, result.total, balance))
    assert figures == [("draw", D("600.00"), D("1000.00"), D("600.00")),
                       ("draw_recovery", D("-200.00"), D("1000.00"), D("400.00")),
                       ("draw_recovery", D("-300.00"), D("1000.00"), D("100.00")),
                       ("draw_recovery", D("-100.00"), D("1400.00"), D("0.00"))]


def test_a_non_recoverable_draw_tops_up_and_is_never_owed_back():
    version = plan(draw={"amount": "1000", "recoverable": False})
    first = statement(version, [win("x", "4000")])
    assert (first.total, first.draw_balance_after) == (D("1000.00"), D("0"))
    assert statement(version, [win("x", "12000")], draw_balance_before=D("0")).total == D("1200.00")


def test_two_currencies_convert_with_the_dated_rate_direct_inverse_or_through_the_reporting_currency():
    rates = ExchangeRates([Rate("EUR", "USD", date(2027, 1, 1), D("1.10")),
                           Rate("EUR", "USD", date(2027, 3, 1), D("1.25")),
                           Rate("GBP", "USD", date(2027, 1, 1), D("1.25"))], reporting_currency="USD")
    result = statement(plan(), [win("a", "11000", currency="USD"), win("b", "8800", day=11, currency="GBP")],
                       rates=rates)
    # 11,000 USD / 1.10 = 10,000 EUR; 8,800 GBP × 1.25 = 11,000 USD / 1.10 = 10,000 EUR; 10 % each.
    assert [line.amount for line in result.lines] == [D("1000.00"), D("1000.00")]
    assert "inverted" in result.lines[0].steps[1]
    march = statement(plan(), [win("c", "12500", day=2, month=3, currency="USD")], rates=rates)
    assert march.total == D("1000.00")  # the March rate: 12,500 / 1.25
    missing = statement(plan(), [win("d", "100", currency="JPY")], rates=rates)
    assert missing.lines == [] and "no exchange rate from JPY to EUR" in missing.warnings[0]


def test_a_mid_period_plan_change_pays_earlier_deals_on_the_old_terms():
    old = PlanVersion("p1", 1, replace(plan().plan, effective_to=date(2027, 2, 15)))
    new = PlanVersion("p1", 2, parse_plan({**old.plan.to_json(), "effective_from": "2027-02-15",
                                           "effective_to": None, "base_rate": "0.12"}))
    wins = [win("a", "10000", day=10), win("b", "10000", day=20)]
    credits = [PlannedCredit(c, plan_for("ann", (), None, w.at.date(), [old, new]))
               for w in wins for c in credits_for_win(w, old)]
    result = compute_statement(StatementInput("ann", *Q1, new, credits))
    assert [(line.amount, line.plan_version) for line in result.lines] == [(D("1000.00"), 1), (D("1200.00"), 2)]


# ------------------------------------------------------------------ combinations across statements
def test_a_clawback_after_lock_lands_on_the_next_statement_once():
    version = plan(clawback={"days": 90})
    locked = statement(version, [win("a", "10000")]).lines  # 1,000 locked and paid
    reopened = Reversal("a", datetime(2027, 4, 5, tzinfo=UTC), "reopened")
    credit = credits_for_win(win("a", "10000"), version, reopened)
    recomputed = compute_statement(StatementInput("ann", *Q1, version, [PlannedCredit(c, version) for c in credit]))
    taken_back = corrections(Q1[0], locked, [], recomputed.lines)
    assert [(line.kind, line.amount, line.lead_id) for line in taken_back] == [("clawback", D("-1000.00"), "a")]
    # Once that line is on a locked statement, recomputing again carries nothing more.
    assert corrections(Q1[0], locked, taken_back, recomputed.lines) == []


def test_recalculation_adds_the_differences_as_lines_and_an_unchanged_one_adds_none():
    before = [Line("commission", "commission:a", D("1000"), "a"), Line("commission", "commission:b", D("500"), "b")]
    after = [Line("commission", "commission:a", D("1200"), "a"), Line("commission", "commission:b", D("500"), "b"),
             Line("spiff", "spiff:c:0", D("300"), "c")]
    lines = recalculation_lines(before, after, "plan_changed")
    assert [(line.key, line.amount) for line in lines] == [("commission:a", D("200")), ("spiff:c:0", D("300"))]
    assert sum(line.amount for line in before + lines) == sum(line.amount for line in after)
    assert recalculation_lines(after, after, "plan_changed") == []


def test_adjustments_are_lines_with_their_reason_and_author():
    result = statement(plan(), [], adjustments=[Adjustment("adj1", D("-50"), "duplicate deal", "mia")])
    assert [(line.kind, line.amount, line.reason, line.author) for line in result.lines] == [
        ("adjustment", D("-50.00"), "duplicate deal", "mia")]


def test_periods():
    assert period_bounds("quarter", date(2027, 11, 30)) == (date(2027, 10, 1), date(2028, 1, 1))
    assert period_bounds("month", date(2027, 12, 31)) == (date(2027, 12, 1), date(2028, 1, 1))


def test_without_a_plan_the_closer_gets_the_whole_credit():
    credits = credits_for_win(win("a", "10"), None)
    assert [(c.participant_id, c.percent, c.kind) for c in credits] == [("ann", D("100"), "split")]
