"""De-duplication rules and rate limits (pure parts of intake); signatures are tested with the shared kit."""


from lead_testkit import a_stored_lead

from lead_service.domain.dedup import changed_fields, company_key, merge_into
from lead_service.domain.lead import LeadIn
from lead_service.domain.ratelimit import RateLimiter
from lead_service.domain.stored_lead import StoredContact


def test_company_key_prefers_the_domain_then_the_business_email_then_the_name():
    assert company_key(LeadIn.model_validate({"contact": {"email": "a@x.io"},
                                              "company": {"domain": "https://www.Acme.com/about"}}))[0] == "acme.com"
    key, values = company_key(LeadIn.model_validate({"contact": {"email": "a@globex.com"}}))
    assert key == "globex.com" and values["name"] == "Globex"
    assert company_key(LeadIn.model_validate({"contact": {"email": "a@gmail.com"},
                                              "company": {"name": " Umbrella "}}))[0] == "name:umbrella"
    assert company_key(LeadIn.model_validate({"contact": {"email": "a@gmail.com"}}))[0] is None


def existing():
    return a_stored_lead({
        "id": "l1", "contact": {"contact_id": "c1", "email": "a@x.io", "first_name": "A", "title": None},
        "company": {"company_id": "co1", "name": "X"}, "country": "DE", "region": None, "value": "10.00",
        "currency": "EUR", "utm": {"source": "google"}, "custom_fields": {"seats": 3}, "status": "open",
        "version": 4})


def test_resubmission_merges_only_what_was_sent():
    candidate = LeadIn.model_validate({"contact": {"email": "a@x.io", "title": "CEO"}, "region": "Bavaria",
                                       "utm": {"campaign": "spring"}, "custom_fields": {"tier": "gold"}})
    contact = StoredContact("c1", first_name="A", last_name=None, email="a@x.io", phone=None, title="CEO")
    merged = merge_into(existing(), candidate, contact, None)
    assert merged.country == "DE" and merged.region == "Bavaria" and str(merged.value) == "10.00"
    assert merged.utm == {"source": "google", "campaign": "spring"}
    assert merged.custom_fields == {"seats": 3, "tier": "gold"}
    assert merged.company.company_id == "co1"
    assert changed_fields(existing(), merged) == ["contact.title", "custom_fields", "region", "utm"]
    assert changed_fields(existing(), existing()) == []


def test_rate_limiter_refills_over_time():
    clock = [0.0]
    limiter = RateLimiter(lambda: clock[0])
    assert [limiter.allow("k", 3) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("other", 3)
    clock[0] += 20  # 3 per minute: one token back after 20 s
    assert limiter.allow("k", 3) and not limiter.allow("k", 3)


def test_rate_limiter_reports_the_ietf_ratelimit_fields():
    clock = [0.0]
    limiter = RateLimiter(lambda: clock[0])
    first = limiter.take("k", 6)  # 6 a minute: one token every 10 s
    assert first.headers() == {"RateLimit-Limit": "6", "RateLimit-Remaining": "5", "RateLimit-Reset": "10"}
    for _ in range(5):
        last = limiter.take("k", 6)
    assert (last.allowed, last.remaining, last.reset_s) == (True, 0, 60)
    clock[0] += 4  # 0.4 of a token back: the next one in 6 s
    refused = limiter.take("k", 6)
    assert refused.headers() == {"RateLimit-Limit": "6", "RateLimit-Remaining": "0", "RateLimit-Reset": "56",
                                 "Retry-After": "6"}
