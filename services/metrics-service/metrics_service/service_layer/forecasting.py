"""Freezing forecasts at a period's start (ForecastSnapshotted) and measuring them once the period closed."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from salesflow_shared.app import Worker, run_periodically
from salesflow_shared.clock import Clock
from salesflow_shared.errors import ValidationFailed
from salesflow_shared.events import ForecastSnapshottedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.reports import Filters
from ..domain import formulas
from ..domain.exchange import Converted
from ..domain.periods import PERIODS, Period, as_utc, period_bounds, to_ts
from .reports.forecast import forecast
from .reports.revenue import won_between

log = structlog.get_logger(__name__)
SCOPES = {"org": None, "team": "team", "rep": "rep"}


async def freeze(uow: UnitOfWork, org_id: str, period: Period, moment: datetime, now: datetime | None = None
                 ) -> list[dict[str, Any]]:
    """Freeze the forecast of the period containing `moment` for the org, each team and each rep, as it
    stands `now` (open pipeline converted at the rates in force that day).

    Rows that already exist for that period are kept (a snapshot is frozen once); returns the new ones.
    Publishes one ForecastSnapshotted per new row, in the same transaction (the caller commits).
    """
    start, end = period_bounds(period, moment)
    created: list[dict[str, Any]] = []
    for scope, group_by in SCOPES.items():
        rows = await forecast(uow.session, Filters(org_id=org_id, group_by=group_by, now=now or moment), period,
                              start)
        if scope == "org" and not rows:
            rows = [{"group": None, "won_so_far": "0.00", "weighted_by_stage": "0.00",
                     "weighted_by_history": "0.00", "best_case": "0.00"}]
        for row in rows:
            if scope != "org" and not row["group"]:
                continue
            values: dict[str, Any]  # of several types: the snapshot's columns
            values = {"snapshot_id": str(uuid.uuid4()), "org_id": org_id, "period": period,
                      "period_start": start, "period_end": end, "scope": scope, "scope_id": row["group"] or "",
                      "currency": row.get("currency"), "created_at": uow.clock.now(),
                      **{k: Decimal(row[k]) for k in ("won_so_far", "weighted_by_stage", "weighted_by_history",
                                                       "best_case")}}
            if not await repository.insert_snapshot(uow.session, values):
                continue
            uow.publish(ForecastSnapshottedV1(
                snapshot_id=values["snapshot_id"], period=period, period_start=start, period_end=end, scope=scope,
                scope_id=row["group"], currency=values["currency"], won_so_far=values["won_so_far"],
                weighted_by_stage=values["weighted_by_stage"], weighted_by_history=values["weighted_by_history"],
                best_case=values["best_case"]), org_id=org_id, subject_id=values["snapshot_id"])
            created.append(snapshot_out(values))
    return created


async def freeze_running(uow: UnitOfWork, org_id: str, period: Period, moment: datetime, now: datetime
                         ) -> list[dict[str, Any]]:
    """Freeze by hand the forecast of the period containing `moment`, which must not have ended: its won_so_far
    would be the actual, and such a "forecast" would make the accuracy report meaningless."""
    if period_bounds(period, moment)[1] <= now:
        raise ValidationFailed.single("date", f"that {period} has ended: a forecast is frozen before or "
                                              "while its period runs")
    return await freeze(uow, org_id, period, moment, now)


def snapshot_out(row: repository.Snapshot | dict[str, Any]) -> dict[str, Any]:
    m = row if isinstance(row, dict) else vars(row)
    return {"snapshot_id": m["snapshot_id"], "period": m["period"],
            "period_start": as_utc(m["period_start"]).isoformat(), "period_end": as_utc(m["period_end"]).isoformat(),
            "scope": m["scope"], "scope_id": m["scope_id"] or None, "currency": m["currency"],
            **{k: formulas.money(m[k]) for k in ("won_so_far", "weighted_by_stage", "weighted_by_history",
                                                 "best_case")}}


async def accuracy(uow: UnitOfWork, org_id: str, period: Period, scope: str, now: datetime,
                   scope_id: str | None = None) -> list[dict[str, Any]]:
    snaps = await repository.closed_snapshots(uow.session, org_id, period, scope, now, scope_id)
    actual_cache: dict[tuple[float, float, str | None], dict[str, Converted]] = {}
    out = []
    for s in snaps:
        key = (to_ts(s.period_start), to_ts(s.period_end), s.currency)
        if key not in actual_cache:  # the actual in the snapshot's currency, each win at its date's rate
            actual_cache[key] = await won_between(uow.session, org_id, scope, *key)
        found = actual_cache[key].get(s.scope_id)
        actual = found.amount if found is not None else Decimal(0)
        forecast_value, history_value = Decimal(s.weighted_by_stage), Decimal(s.weighted_by_history)
        bias = formulas.forecast_bias(forecast_value, actual)
        out.append({**snapshot_out(s), "currency": found.currency if found else s.currency,
                    "actual": formulas.money(actual),
                    "accuracy_pct": formulas.forecast_accuracy(forecast_value, actual),
                    "bias": formulas.money(bias), "bias_pct": formulas.pct(bias, actual),
                    "history_accuracy_pct": formulas.forecast_accuracy(history_value, actual),
                    "history_bias": formulas.money(formulas.forecast_bias(history_value, actual))})
    return out


async def snapshot_worker_tick(context: Any, clock: Clock) -> int:
    """Freeze the current month, quarter and year for every org that has leads and no snapshot yet."""
    now = clock.now()
    frozen = 0
    async with context.uow() as uow:
        orgs = await repository.orgs_with_leads(uow.session)
    for org_id in orgs:
        for period in PERIODS:
            start, _ = period_bounds(period, now)
            async with context.uow() as uow:
                if await repository.org_forecast_frozen(uow.session, org_id, period, start):
                    continue
                frozen += len(await freeze(uow, org_id, period, now, now))
                await uow.commit()
    return frozen


def snapshot_worker(clock: Clock, interval_s: float) -> Worker:
    """Freeze each new period's forecasts, checking every `interval_s`."""
    async def forecast_snapshot_worker(context: Any) -> None:
        async def tick() -> bool:
            count = await snapshot_worker_tick(context, clock)
            if count:
                log.info("forecasts_frozen", snapshots=count)
            return False
        await run_periodically(context, tick, interval_s, name="forecast_snapshots")
    return forecast_snapshot_worker
