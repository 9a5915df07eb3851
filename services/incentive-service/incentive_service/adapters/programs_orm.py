"""Incentive programs' tables (contests, points, badges): migration g0001 onwards.

- `programs`: what managers define (the definition as a JSON document, its rule versions inside) and where it
  stands (draft → running → ended);
- `program_facts`: what the service learns from events that programs may score (activities, stage moves, wins,
  reopenings), one row per happening, kept whatever the program, so a program started later, or a fact that
  arrives late, is scored from the same facts;
- `program_leads`: each lead's latest expected close date and owner (for the sandbagging flag);
- what the service computes: `program_contributions` (the points each fact earned in each program),
  `program_scores` (each participant's tally, rewritten whenever their contributions change), `program_awards`
  (milestones, places and badges: once each, by their key) and `program_flags` (sandbagging).
"""
import sqlalchemy as sa

from .orm import ID, ORG, TZ, metadata

programs = sa.Table(
    "programs", metadata,
    sa.Column("org_id", ORG, primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("template", sa.String(40), nullable=True),
    sa.Column("status", sa.String(10), nullable=False),  # draft, running, ended
    sa.Column("hidden", sa.Boolean, nullable=False),
    sa.Column("starts_at", TZ, nullable=False),
    sa.Column("ends_at", TZ, nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # of the row (ETag); rule versions are in the definition
    sa.Column("created_by", ID, nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("started_at", TZ, nullable=True),
    sa.Column("ended_at", TZ, nullable=True),
)
sa.Index("ix_programs_running", programs.c.status, programs.c.ends_at)

program_participants = sa.Table(
    "program_participants", metadata,
    sa.Column("org_id", ORG, primary_key=True),
    sa.Column("participant", ID, primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
)

program_facts = sa.Table(
    "program_facts", metadata,
    sa.Column("org_id", ORG, primary_key=True),
    sa.Column("fact_key", sa.String(120), primary_key=True),  # activity:<id> or <event type>:<event id>
    sa.Column("lead_id", ID, nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # activity, stage, won, reopened
    sa.Column("at", TZ, nullable=False),
    sa.Column("fact", sa.JSON, nullable=False),  # the domain Fact's fields
)
sa.Index("ix_program_facts_lead", program_facts.c.org_id, program_facts.c.lead_id)
sa.Index("ix_program_facts_at", program_facts.c.org_id, program_facts.c.at)

program_leads = sa.Table(
    "program_leads", metadata,
    sa.Column("org_id", ORG, primary_key=True),
    sa.Column("lead_id", ID, primary_key=True),
    sa.Column("lead_version", sa.Integer, nullable=False),
    sa.Column("owner_id", ID, nullable=True),
    sa.Column("expected_close_date", sa.Date, nullable=True),
)

program_contributions = sa.Table(
    "program_contributions", metadata,
    sa.Column("org_id", ORG, nullable=False),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("fact_key", sa.String(120), primary_key=True),
    sa.Column("lead_id", ID, nullable=False),
    sa.Column("participant", ID, nullable=False),
    sa.Column("behaviour", sa.String(20), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("at", TZ, nullable=False),
    sa.Column("rule_version", sa.Integer, nullable=False),
)
sa.Index("ix_program_contributions_lead", program_contributions.c.program_id, program_contributions.c.lead_id)
sa.Index("ix_program_contributions_participant", program_contributions.c.program_id,
         program_contributions.c.participant)

program_scores = sa.Table(
    "program_scores", metadata,
    sa.Column("org_id", ORG, nullable=False),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("participant", ID, primary_key=True),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("reached_at", TZ, nullable=True),
    sa.Column("crossings", sa.JSON, nullable=False),  # {"<threshold>": "<when first crossed>"}
    # When the tally last changed (not indexed: an indexed column written by every update would keep the
    # updates from being heap-only).
    sa.Column("changed_at", TZ, nullable=False),
)

program_awards = sa.Table(
    "program_awards", metadata,
    sa.Column("org_id", ORG, nullable=False),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("award_key", sa.String(200), primary_key=True),  # milestone:<id>:<rep>, place:<n>:<rep>, badge:...
    sa.Column("participant", ID, nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # milestone, place, badge
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("badge", sa.String(100), nullable=True),
    sa.Column("cash", sa.Numeric(18, 2), nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("earned_by", sa.String(120), nullable=True),  # the fact that earned it (badges, milestones)
    sa.Column("earned_at", TZ, nullable=False),
    sa.Column("recorded_at", TZ, nullable=False),
)
sa.Index("ix_program_awards_participant", program_awards.c.org_id, program_awards.c.participant)

program_flags = sa.Table(
    "program_flags", metadata,
    sa.Column("org_id", ORG, nullable=False),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("lead_id", ID, primary_key=True),
    sa.Column("changed_at", TZ, primary_key=True),
    sa.Column("rep_id", ID, nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),  # sandbagging
    sa.Column("reason", sa.Text, nullable=False),
)
