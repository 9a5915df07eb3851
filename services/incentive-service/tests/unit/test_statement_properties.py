"""Properties over random credits: a statement's total is the sum of its lines, and computing it again with the
same inputs gives the same lines (so a recomputation adds no adjustment)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from incentive_service.domain.commissions import (
    PlannedCredit,
    Quota,
    StatementInput,
    Win,
    compute_statement,
    credits_for_win,
    recalculation_lines,
)
from incentive_service.domain.money import ExchangeRates, Rate
from incentive_service.domain.plans import PlanVersion, parse_plan

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500000"), places=2)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("0.3"), places=3)


@st.composite
def plans(draw):
    doc = {"name": "P", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
           "coverage": {"participants": ["ann", "sam"]}, "base_rate": str(draw(rates))}
    if draw(st.booleans()):
        first = draw(st.integers(min_value=1, max_value=150))
        doc["tiers"] = {"mode": draw(st.sampled_from(["retroactive", "marginal"])),
                        "bands": [{"from": "0", "to": str(first), "rate": str(draw(rates))},
                                  {"from": str(first), "to": None, "rate": str(draw(rates))}]}
    if draw(st.booleans()):
        doc["cap"] = str(draw(money))
    if draw(st.booleans()):
        doc["hurdle"] = str(draw(st.integers(min_value=0, max_value=120)))
    if draw(st.booleans()):
        doc["draw"] = {"amount": str(draw(money)), "recoverable": draw(st.booleans())}
    if draw(st.booleans()):
        share = draw(st.integers(min_value=1, max_value=99))
        doc["credit"] = {"splits": [{"to": "closer", "percent": str(share)},
                                    {"to": "sam", "percent": str(100 - share)}]}
    doc["spiffs"] = [{"kind": "large_deal", "min_value": "100000", "amount": "1000"},
                     {"kind": "new_logo", "amount": "250"}]
    return PlanVersion("p", 1, parse_plan(doc))


@settings(max_examples=150, deadline=None)
@given(plan=plans(), deals=st.lists(st.tuples(money, st.integers(min_value=0, max_value=89),
                                              st.sampled_from(["EUR", "USD"]), st.booleans()), max_size=25),
       quota=st.one_of(st.none(), money), balance=st.decimals(min_value=0, max_value=5000, places=2))
def test_total_is_the_sum_of_lines_and_recomputation_is_idempotent(plan, deals, quota, balance):
    start = datetime(2027, 1, 1, tzinfo=UTC)
    credits = []
    for i, (value, day, currency, new_logo) in enumerate(deals):
        win = Win(f"e{i}", f"l{i}", start + timedelta(days=day), value, currency, "ann", new_logo=new_logo)
        credits += [PlannedCredit(c, plan) for c in credits_for_win(win, plan) if c.participant_id == "ann"]
    inp = StatementInput("ann", date(2027, 1, 1), date(2027, 4, 1), plan, credits,
                         rates=ExchangeRates([Rate("EUR", "USD", date(2026, 1, 1), Decimal("1.1"))]),
                         quota=Quota(quota, "EUR") if quota else None, draw_balance_before=balance)
    first, second = compute_statement(inp), compute_statement(inp)
    assert first.total == sum((line.amount for line in first.lines), Decimal(0))
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in first.lines)
    assert first.lines == second.lines and first.draw_balance_after == second.draw_balance_after
    assert recalculation_lines(first.lines, second.lines, "recalculation") == []
    if plan.plan.cap is not None:
        assert sum(line.amount for line in first.lines if line.kind == "commission") <= plan.plan.cap
