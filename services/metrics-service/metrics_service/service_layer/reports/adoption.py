"""Adoption: coverage of the open pipeline and compliance of stage exits (the SQL: adapters/reports/adoption.py)."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch
from ...adapters.reports.adoption import Compliance, Coverage
from ...adapters.reports.sql import rollup_serves
from ...domain import formulas
from ...domain.periods import to_ts
from .common import Row, dialect_of, group_name, name_groups

NO_COVERAGE = Coverage("", None, None)  # a group with no open lead
NO_COMPLIANCE = Compliance("", None, None)  # a group with no stage exit in the period


async def adoption(session: AsyncSession, f: Filters) -> list[Row]:
    coverage = {r.g: r for r in await fetch(session, queries.adoption.coverage(f, to_ts(f.now)))}
    compliance = {r.g: r for r in await fetch(session, queries.adoption.compliance(
        f, by_month=rollup_serves(dialect_of(session), f)))}
    rows = []
    for key in sorted(set(coverage) | set(compliance)):
        c, k = coverage.get(key, NO_COVERAGE), compliance.get(key, NO_COMPLIANCE)
        rows.append({"group": group_name(key), "open_leads": int(c.open_leads or 0), "covered": int(c.covered or 0),
                     "coverage_pct": formulas.pct(c.covered or 0, c.open_leads),
                     "stage_exits": int(k.exits or 0), "compliant_exits": int(k.compliant or 0),
                     "compliance_pct": formulas.pct(k.compliant or 0, k.exits)})
    return await name_groups(session, f, rows, default="rep")
