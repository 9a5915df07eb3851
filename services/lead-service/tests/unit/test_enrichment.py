"""Enrichment from the email address and the provider's circuit breaker."""
import pytest

from lead_service.domain.enrichment import CircuitBreaker, CircuitOpen, analyse_email, guess_company


def test_business_address_gives_domain_and_company_guess():
    insights = analyse_email("Jane.Doe@Acme-Widgets.co.uk")
    assert insights.domain == "acme-widgets.co.uk"
    assert insights.company_guess == "Acme Widgets"
    assert insights.is_business and not insights.is_free_mail and not insights.is_role_address


def test_free_disposable_and_role_addresses_are_flagged():
    assert analyse_email("someone@gmail.com").is_free_mail
    assert analyse_email("someone@gmail.com").company_guess is None
    assert analyse_email("x@mailinator.com").is_disposable and not analyse_email("x@mailinator.com").is_business
    assert analyse_email("info@acme.com").is_role_address
    assert analyse_email("sales+eu@acme.com").is_role_address
    assert not analyse_email("ines@acme.com").is_role_address
    assert analyse_email(None) is None and analyse_email("nope") is None


def test_company_guess_from_subdomains():
    assert guess_company("mail.globex.com") == "Globex"
    assert guess_company("initech.io") == "Initech"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(clock, failure_threshold=3, reset_after_s=30)
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 30
    assert breaker.state == "half_open"
    breaker.before_call()  # one trial call
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second concurrent trial is refused
    breaker.record_failure()
    assert breaker.state == "open"  # the trial failed: open again for a full cooldown
    clock.now += 30
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0


def test_breaker_counts_consecutive_failures_only():
    breaker = CircuitBreaker(FakeClock(), failure_threshold=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"
