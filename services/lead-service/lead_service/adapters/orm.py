"""lead-service's tables. Only this service reads or writes them; every row carries its org."""
from typing import Any

import sqlalchemy as sa

from salesflow_shared.infra_tables import add_infrastructure_tables
from salesflow_shared.ownership import add_past_owners_table

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
# reps that owned a lead before its current owner (they keep read access)
lead_past_owners = add_past_owners_table(metadata)

TZ = sa.DateTime(timezone=True)


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, TZ, nullable=nullable)


companies = sa.Table(
    "companies", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    # domain when known, else "name:<lower name>": companies are de-duplicated on it
    sa.Column("dedup_key", sa.String(300), nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("domain", sa.String(253)),
    sa.Column("size", sa.String(50)),
    sa.Column("industry", sa.String(100)),
    _ts("created_at"), _ts("updated_at"),
    sa.UniqueConstraint("org_id", "dedup_key", name="uq_companies_org_key"),
)

contacts = sa.Table(
    "contacts", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("email", sa.String(320)),  # lower-cased; unique per org (NULLs never collide)
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("phone", sa.String(50)),
    sa.Column("title", sa.String(200)),
    sa.Column("company_id", sa.String(36)),
    _ts("created_at"), _ts("updated_at"), _ts("erased_at", True),
    sa.UniqueConstraint("org_id", "email", name="uq_contacts_org_email"),
)

leads = sa.Table(
    "leads", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("contact_id", sa.String(36)),
    sa.Column("company_id", sa.String(36)),
    sa.Column("email", sa.String(320)),  # the contact's email, for de-duplication
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    sa.Column("country", sa.String(2)),
    sa.Column("region", sa.String(100)),
    sa.Column("postcode", sa.String(20)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("language", sa.String(16)),
    sa.Column("product_line", sa.String(100)),
    sa.Column("value", sa.Numeric(18, 2)),
    sa.Column("currency", sa.String(3)),
    sa.Column("expected_close_date", sa.Date),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("utm", sa.JSON, nullable=False),
    sa.Column("custom_fields", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("disqualify_reason", sa.Text),
    sa.Column("owner_id", sa.String(100)),
    sa.Column("team_id", sa.String(100)),
    sa.Column("score", sa.Integer, nullable=False, server_default="0"),
    sa.Column("score_breakdown", sa.JSON, nullable=False),
    sa.Column("form_id", sa.String(36)),
    sa.Column("import_id", sa.String(36)),
    sa.Column("enrichment", sa.JSON, nullable=False),
    # none (no provider), pending, done, failed
    sa.Column("enrichment_status", sa.String(20), nullable=False, server_default="none"),
    sa.Column("enrichment_attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("enrichment_next_at", True),
    # the last failed attempt: when and why (an admin re-runs the leads that failed during an outage)
    _ts("enrichment_failed_at", True),
    sa.Column("enrichment_error", sa.String(500)),
    sa.Column("version", sa.Integer, nullable=False),
    # last subject_version seen per producer family of consumed events (stale ones are ignored)
    sa.Column("assignment_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("outcome_version", sa.Integer, nullable=False, server_default="0"),
    _ts("created_at"), _ts("updated_at"), _ts("deleted_at", True), _ts("erased_at", True),
)
sa.Index("ix_leads_org_created", leads.c.org_id, leads.c.created_at, leads.c.id)
sa.Index("ix_leads_org_email", leads.c.org_id, leads.c.email)
sa.Index("ix_leads_enrichment_due", leads.c.enrichment_status, leads.c.enrichment_next_at)

activities = sa.Table(
    "activities", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("lead_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("rep_id", sa.String(100)),
    _ts("occurred_at"),
    sa.Column("duration_seconds", sa.Integer),
    sa.Column("outcome", sa.String(100)),
    sa.Column("subject", sa.String(300)),
    sa.Column("notes", sa.Text),
    sa.Column("source", sa.String(20), nullable=False),  # rep, form, sequence, system
    sa.Column("external_id", sa.String(200)),  # e.g. the delivery id of an EmailSent
    _ts("created_at"),
    sa.UniqueConstraint("org_id", "external_id", name="uq_activities_external"),
)
sa.Index("ix_activities_lead", activities.c.org_id, activities.c.lead_id, activities.c.occurred_at)

forms = sa.Table(
    "forms", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("mapping", sa.JSON, nullable=False),
    sa.Column("defaults", sa.JSON, nullable=False),
    sa.Column("required", sa.JSON, nullable=False),
    sa.Column("public_key", sa.String(64), nullable=False, unique=True),
    sa.Column("signing_secret", sa.String(128), nullable=False),
    sa.Column("honeypot_field", sa.String(100), nullable=False),
    sa.Column("redirect_url", sa.Text),
    sa.Column("rate_limit_per_minute", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    _ts("created_at"), _ts("updated_at"),
    # Origins whose pages may post from script (CORS); empty: no cross-origin script access.
    sa.Column("allowed_origins", sa.JSON, nullable=False, server_default="[]"),
)

submissions = sa.Table(
    "submissions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("form_id", sa.String(36), nullable=False),
    _ts("received_at"),
    sa.Column("channel", sa.String(20), nullable=False),  # signed, browser
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("raw_body", sa.Text, nullable=False),
    sa.Column("remote_ip", sa.String(64)),
    sa.Column("dedup_key", sa.String(255)),  # Idempotency-Key or the provider's submission id
    sa.Column("status", sa.String(20), nullable=False),  # received, accepted, failed, spam
    sa.Column("errors", sa.JSON),
    sa.Column("lead_id", sa.String(36)),
    sa.Column("outcome", sa.String(20)),  # created, updated
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("processed_at", True),
    sa.UniqueConstraint("org_id", "form_id", "dedup_key", name="uq_submissions_dedup"),
)
sa.Index("ix_submissions_form_status", submissions.c.org_id, submissions.c.form_id, submissions.c.status,
         submissions.c.received_at)

scoring_rules = sa.Table(
    "scoring_rules", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    _ts("created_at"), _ts("updated_at"),
)
sa.Index("ix_scoring_rules_org", scoring_rules.c.org_id)

custom_field_defs = sa.Table(
    "custom_field_defs", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("label", sa.String(200)),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("required", sa.Boolean, nullable=False),
    _ts("created_at"),
)

imports = sa.Table(
    "imports", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # queued, processing, done
    sa.Column("filename", sa.String(300)),
    sa.Column("form_id", sa.String(36)),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("total_rows", sa.Integer, nullable=False, server_default="0"),
    sa.Column("processed_rows", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_by", sa.String(100)),
    _ts("created_at"), _ts("started_at", True), _ts("finished_at", True),
)
sa.Index("ix_imports_status", imports.c.status)

import_rows = sa.Table(
    "import_rows", metadata,
    sa.Column("import_id", sa.String(36), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending, created, updated, failed
    sa.Column("errors", sa.JSON),
    sa.Column("lead_id", sa.String(36)),
)
sa.Index("ix_import_rows_status", import_rows.c.import_id, import_rows.c.status, import_rows.c.row_number)

# A lead's story from the events about it (domain/timeline.py); one row per entry, an event adds one or two.
lead_timeline = sa.Table(
    "lead_timeline", metadata,
    # "<event id>.<n>": the entries of one event keep their order (an event at the same instant as another
    # still tells its own entries in order)
    sa.Column("id", sa.String(50), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("lead_id", sa.String(100), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("event_type", sa.String(50), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    _ts("occurred_at"),
    sa.Column("correlation_id", sa.String(100)),
    sa.Column("producer", sa.String(50), nullable=False),
    sa.Column("summary", sa.String(600), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    _ts("recorded_at"),
    # a redelivered event adds nothing twice
    sa.UniqueConstraint("org_id", "event_id", "kind", name="uq_lead_timeline_event"),
    sa.Index("ix_lead_timeline_lead", "org_id", "lead_id", "occurred_at", "id"),
    sa.Index("ix_lead_timeline_correlation", "org_id", "correlation_id"),
)
