"""Adoption: coverage of the open pipeline and compliance of stage exits (the SQL: adapters/reports/adoption.py)."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch
from ...adapters.reports.sql import rollup_serves
from ...domain import formulas
from ...domain.periods import to_ts
from .common import Row, dialect_of, group_name, name_groups


async def adoption(session: AsyncSession, f: Filters) -> list[Row]:
    coverage = {r["g"]: r for r in await fetch(session, queries.adoption.coverage(f, to_ts(f.now)))}
    compliance = {r["g"]: r for r in await fetch(session, queries.adoption.compliance(
        f, by_month=rollup_serves(dialect_of(session), f)))}
    rows = []
    for key in sorted(set(coverage) | set(compliance)):
        c, k = coverage.get(key, {}), compliance.get(key, {})
        rows.append({"group": group_name(key), "open_leads": int(c.get("open_leads") or 0),
                     "covered": int(c.get("covered") or 0),
                     "coverage_pct": formulas.pct(c.get("covered") or 0, c.get("open_leads")),
                     "stage_exits": int(k.get("exits") or 0), "compliant_exits": int(k.get("compliant") or 0),
                     "compliance_pct": formulas.pct(k.get("compliant") or 0, k.get("exits"))})
    return await name_groups(session, f, rows, default="rep")
