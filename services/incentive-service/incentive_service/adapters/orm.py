"""incentive-service's tables. Only this service reads or writes them.

Three groups:
- what the service learns from events (its own copies, written by the handlers): `deals` and the outcomes of
  each (`deal_outcomes`: every win, loss, reopening or refund, so clawbacks are decided from the history, in
  any arrival order), `payees` (the rep directory plus the currency each is paid in), `quotas`,
  `exchange_rates` and `org_currency`;
- what managers define: `plans` (versioned, effective-dated JSON documents), `adjustments` and `disputes`;
- what the service computes: `statements` (one row per participant, period and version) with their
  `statement_lines`, the `recalculation_queue` of statements whose inputs changed, and the `audit_log`.

Money is NUMERIC(18, 2) for amounts and NUMERIC(20, 8) for rates; periods are [period_start, period_end) dates.
"""
import sqlalchemy as sa

from salesflow_shared.infra_tables import BigIntId, add_infrastructure_tables

metadata = sa.MetaData()
add_infrastructure_tables(metadata)

ORG = sa.String(100)
ID = sa.String(100)
MONEY = sa.Numeric(18, 2)
RATE = sa.Numeric(20, 8)
CURRENCY = sa.String(3)
TZ = sa.DateTime(timezone=True)


def _org() -> sa.Column:
    return sa.Column("org_id", ORG, primary_key=True)


# ------------------------------------------------------------------ learned from events
deals = sa.Table(
    "deals", metadata,
    _org(),
    sa.Column("lead_id", ID, primary_key=True),
    # From LeadCreated/LeadUpdated (the newest lead snapshot wins, by its subject_version).
    sa.Column("lead_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("product_line", sa.String(100), nullable=True),
    sa.Column("company_key", sa.String(300), nullable=True),  # company id, else domain, else name: "new logo"
    sa.Column("value", MONEY, nullable=True),
    sa.Column("currency", CURRENCY, nullable=True),
    # From LeadAssigned (the newest decision wins, by its subject_version) or the lead snapshot.
    sa.Column("owner_id", ID, nullable=True),
    sa.Column("team_id", ID, nullable=True),
    sa.Column("assigned_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", TZ, nullable=False),
    sa.Index("ix_deals_company", "org_id", "company_key"),
)

deal_outcomes = sa.Table(
    "deal_outcomes", metadata,
    _org(),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("lead_id", ID, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # won, lost, reopened, refunded
    sa.Column("at", TZ, nullable=False),
    # Of a win: the value and currency won and the owner at the win (the closer).
    sa.Column("value", MONEY, nullable=True),
    sa.Column("currency", CURRENCY, nullable=True),
    sa.Column("owner_id", ID, nullable=True),
    sa.Column("team_id", ID, nullable=True),
    sa.Column("recorded_by", ID, nullable=True),  # a refund entered over the API: who
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("ix_deal_outcomes_lead", "org_id", "lead_id", "at"),
    sa.Index("ix_deal_outcomes_at", "org_id", "kind", "at"),
    sa.Index("ix_deal_outcomes_owner", "org_id", "owner_id", "at"),
)

payees = sa.Table(
    "payees", metadata,
    _org(),
    sa.Column("participant_id", ID, primary_key=True),  # the rep's user id (JWT sub)
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("team_ids", sa.JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("directory_version", sa.Integer, nullable=False, server_default="0"),
    # Set over the API (/v1/payees): the currency they are paid in and the role plans may cover.
    sa.Column("currency", CURRENCY, nullable=True),
    sa.Column("role", sa.String(100), nullable=True),
    sa.Column("updated_at", TZ, nullable=False),
)

quotas = sa.Table(
    "quotas", metadata,
    _org(),
    sa.Column("quota_id", sa.String(36), primary_key=True),
    sa.Column("scope", sa.String(10), nullable=False),  # rep, team
    sa.Column("scope_id", ID, nullable=False),
    sa.Column("period", sa.String(10), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", CURRENCY, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("removed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_quotas_scope", "org_id", "scope", "scope_id", "period_start"),
)

exchange_rates = sa.Table(
    "exchange_rates", metadata,
    _org(),
    sa.Column("base_currency", CURRENCY, primary_key=True),
    sa.Column("quote_currency", CURRENCY, primary_key=True),
    sa.Column("valid_from", sa.Date, primary_key=True),
    sa.Column("rate", RATE, nullable=False),  # 1 base = rate quote
)

org_currency = sa.Table(
    "org_currency", metadata,
    _org(),
    sa.Column("reporting_currency", CURRENCY, nullable=False),
)

# ------------------------------------------------------------------ defined by managers
plans = sa.Table(
    "plans", metadata,
    _org(),
    sa.Column("plan_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("document", sa.JSON, nullable=False),  # the validated plan (domain/plans.py)
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("effective_to", sa.Date, nullable=True),  # exclusive; the next version's effective_from
    sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_by", ID, nullable=False),
    sa.Column("created_at", TZ, nullable=False),
)

adjustments = sa.Table(
    "adjustments", metadata,
    _org(),
    sa.Column("adjustment_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", ID, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),  # the statement it lands on
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", CURRENCY, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("author", ID, nullable=False),
    sa.Column("dispute_id", sa.String(36), nullable=True),
    sa.Column("created_at", TZ, nullable=False),
    sa.Index("ix_adjustments_participant", "org_id", "participant_id", "period_start"),
)

disputes = sa.Table(
    "disputes", metadata,
    _org(),
    sa.Column("dispute_id", sa.String(36), primary_key=True),
    sa.Column("statement_id", sa.String(36), nullable=False),
    sa.Column("line_id", sa.String(36), nullable=False),
    sa.Column("participant_id", ID, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("opened_by", ID, nullable=False),
    sa.Column("opened_at", TZ, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # open, accepted, rejected
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("resolved_by", ID, nullable=True),
    sa.Column("resolved_at", TZ, nullable=True),
    sa.Column("adjustment_id", sa.String(36), nullable=True),
    sa.Index("ix_disputes_statement", "org_id", "statement_id"),
    sa.Index("ix_disputes_participant", "org_id", "participant_id", "status"),
)

# ------------------------------------------------------------------ computed
statements = sa.Table(
    "statements", metadata,
    _org(),
    sa.Column("statement_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", ID, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # computed, reviewed, approved, locked, paid; superseded once a newer version exists
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("plan_currency", CURRENCY, nullable=False),
    sa.Column("total", MONEY, nullable=False),  # the sum of the lines, in plan_currency
    sa.Column("payout_currency", CURRENCY, nullable=False),
    sa.Column("payout", MONEY, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),  # attainment, quota, tiers, cap, hurdle, draw balance, warnings
    sa.Column("fingerprint", sa.String(64), nullable=False),  # of the inputs: an unchanged recompute is a no-op
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # bumps on every change of this row (events, ETag)
    sa.Column("computed_at", TZ, nullable=False),
    sa.Column("reviewed_by", ID, nullable=True),
    sa.Column("reviewed_at", TZ, nullable=True),
    sa.Column("approved_by", ID, nullable=True),
    sa.Column("approved_at", TZ, nullable=True),
    sa.Column("locked_by", ID, nullable=True),
    sa.Column("locked_at", TZ, nullable=True),
    sa.Column("paid_by", ID, nullable=True),
    sa.Column("paid_at", TZ, nullable=True),
    sa.Column("payment_reference", sa.String(200), nullable=True),
    sa.UniqueConstraint("org_id", "participant_id", "period_start", "version", name="uq_statement_version"),
    sa.Index("ix_statements_period", "org_id", "period_start", "status"),
)

statement_lines = sa.Table(
    "statement_lines", metadata,
    _org(),
    sa.Column("line_id", sa.String(36), primary_key=True),
    sa.Column("statement_id", sa.String(36), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    # commission, spiff, cap, hurdle, clawback, draw, draw_recovery, adjustment, correction, recalculation
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),  # what the line is about, stable across recomputations
    sa.Column("lead_id", ID, nullable=True),
    sa.Column("plan_id", sa.String(36), nullable=True),
    sa.Column("plan_version", sa.Integer, nullable=True),
    sa.Column("rule", sa.String(200), nullable=True),  # the plan rule: "tiers[1]", "spiffs[0]", "cap", ...
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("steps", sa.JSON, nullable=False),  # the calculation, step by step ("explain")
    sa.Column("reason", sa.Text, nullable=True),  # of an adjustment
    sa.Column("author", ID, nullable=True),
    sa.Index("ix_statement_lines_statement", "org_id", "statement_id", "seq"),
)

# What changed and needs statements recomputed, coalesced: one row per (what, which, from when). The worker
# expands a row into the statements it affects (a lead: its credited participants; a participant: their
# periods from that date; the org: every open statement) and deletes it in the same transaction.
recalculation_queue = sa.Table(
    "recalculation_queue", metadata,
    _org(),
    sa.Column("subject_kind", sa.String(12), primary_key=True),  # lead, participant, org
    sa.Column("subject_id", ID, primary_key=True),
    sa.Column("on_date", sa.Date, primary_key=True),  # the earliest date affected
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("queued_at", TZ, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("org_id", ORG, nullable=False),
    sa.Column("at", TZ, nullable=False),
    sa.Column("actor", ID, nullable=False),  # a user, or "system" for what events caused
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("entity_id", sa.String(100), nullable=False),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
    sa.Index("ix_audit_log_org", "org_id", "id"),
    sa.Index("ix_audit_log_entity", "org_id", "entity", "entity_id"),
)
