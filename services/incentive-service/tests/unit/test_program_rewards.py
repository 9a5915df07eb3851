"""Cash rewards of incentive programs land on the commission statement as explained lines."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

from incentive_service.domain.commissions import PlannedCredit, StatementInput, Win, compute_statement, credits_for_win
from incentive_service.domain.money import ExchangeRates, Rate
from incentive_service.domain.plans import PlanVersion, parse_plan
from incentive_service.domain.programs.rewards import CashReward, reward_lines

RATES = ExchangeRates([Rate("EUR", "USD", date(2027, 1, 1), D("1.10"))])


def reward(key: str, amount: str, currency: str, day: int, name: str = "Silver") -> CashReward:
    return CashReward("prog-1", "February ladder", key, name, D(amount), currency, date(2027, 2, day))


def test_each_cash_reward_is_a_line_in_the_statement_currency_with_its_conversion():
    lines, warnings = reward_lines([reward("place:1:ann", "100", "USD", 28, "place 1"),
                                    reward("milestone:silver:ann", "50", "EUR", 10)], "USD", RATES)
    # 50 EUR x 1.10 = 55.00 USD (earned first, so listed first); 100 USD as is
    assert [(line.kind, line.key, line.amount) for line in lines] == [
        ("program_spiff", "program:prog-1:milestone:silver:ann", D("55.00")),
        ("program_spiff", "program:prog-1:place:1:ann", D("100.00"))]
    assert lines[0].description == "SPIFF Silver — February ladder"
    assert lines[0].steps[1].startswith("1 EUR = 1.1 USD (from 2027-01-01)")
    assert warnings == []


def test_a_reward_without_a_rate_waits_with_a_warning():
    lines, warnings = reward_lines([reward("milestone:silver:ann", "50", "GBP", 10)], "USD", RATES)
    assert lines == [] and warnings == [
        "February ladder: Silver (50.00 GBP) waits for a GBP→USD rate on 2027-02-10"]


def test_reward_lines_count_in_the_statement_total():
    plan = PlanVersion("p1", 1, parse_plan({"name": "AE", "currency": "USD", "period": "quarter",
                                            "effective_from": "2027-01-01",
                                            "coverage": {"participants": ["ann"]}, "base_rate": "0.10"}))
    win = Win("ev-a", "a", datetime(2027, 2, 10, 12, tzinfo=UTC), D("10000"), "USD", "ann")
    credits = [PlannedCredit(c, plan) for c in credits_for_win(win, plan)]
    lines, _ = reward_lines([reward("milestone:silver:ann", "50", "EUR", 10)], "USD", RATES)
    result = compute_statement(StatementInput("ann", date(2027, 1, 1), date(2027, 4, 1), plan, credits,
                                              rates=RATES, rewards=lines))
    # 10 % of 10,000 = 1,000.00 commission + 55.00 SPIFF
    assert [line.amount for line in result.lines] == [D("1000.00"), D("55.00")]
    assert result.total == D("1055.00")
