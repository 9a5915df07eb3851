"""incentive-service's queries, one module per aggregate; each function takes the session and the org (the
recalculation worker, which serves every org, says so) and answers dataclasses or domain objects."""
from __future__ import annotations

import sqlalchemy as sa


def locked_prior(table: sa.Table, name: str) -> sa.Subquery:
    """The lead's row of `table` (bound `org` and `lead`) as an UPDATE ... FROM it finds it before writing over it,
    to RETURN the row as it was: read FOR UPDATE in the same statement, so that after waiting for another writer
    it is the row that writer left, the one the update writes over."""
    prior = table.alias("prior")
    return (sa.select(prior).where(prior.c.org_id == sa.bindparam("org"), prior.c.lead_id == sa.bindparam("lead"))
            .with_for_update().subquery(name))
