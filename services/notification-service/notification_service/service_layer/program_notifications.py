"""Incentive programs' notifications (events from incentive-service): the participants are told, by email and
by every matching webhook subscription, right after the achievement — once per rep, achievement and channel."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from salesflow_shared.clock import Clock
from salesflow_shared.consumer import HandlerMap
from salesflow_shared.events import (
    BadgeEarnedV1,
    Envelope,
    ProgramMilestoneReachedV1,
    ProgramRulesChangedV1,
    ProgramStartedV1,
    ProgramWonV1,
)
from salesflow_shared.uow import UnitOfWork

from ..config import Settings
from .notify import notify_rep


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


class ProgramNotifications:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    async def _tell(self, uow: UnitOfWork, envelope: Envelope, rep_id: str, reason: str, once_key: str,
                    program: dict[str, Any]) -> None:
        await notify_rep(uow, self.settings, org_id=envelope.org_id, rep_id=rep_id, reason=reason,
                         once_key=once_key, now=self.clock.now(), program=program)

    async def _tell_everyone(self, uow: UnitOfWork, envelope: Envelope, participants: list[str], reason: str,
                             key: str, program: dict[str, Any]) -> None:
        for rep_id in participants:
            await self._tell(uow, envelope, rep_id, reason, f"{key}:{rep_id}", program)

    async def on_program_started(self, data: ProgramStartedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await self._tell_everyone(uow, envelope, data.participants, "program_started",
                                  f"program_started:{data.program_id}",
                                  {"id": data.program_id, "name": data.program_name, "rules": data.rules_summary,
                                   "ends_at": data.ends_at.isoformat()})

    async def on_rules_changed(self, data: ProgramRulesChangedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await self._tell_everyone(uow, envelope, data.participants, "program_rules_changed",
                                  f"program_rules_changed:{data.program_id}:v{data.rule_version}",
                                  {"id": data.program_id, "name": data.program_name, "rules": data.rules_summary,
                                   "effective_from": data.effective_from.isoformat()})

    async def on_milestone(self, data: ProgramMilestoneReachedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await self._tell(uow, envelope, data.rep_id, "program_milestone",
                         f"program_milestone:{data.program_id}:{data.milestone_id}:{data.rep_id}",
                         {"id": data.program_id, "name": data.program_name, "achievement": data.milestone_name,
                          "points": data.points, "badge": data.badge, "cash": _money(data.cash),
                          "currency": data.currency, "next": data.next_milestone})

    async def on_badge(self, data: BadgeEarnedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await self._tell(uow, envelope, data.rep_id, "badge_earned",
                         f"badge_earned:{data.program_id}:{data.badge_id}:{data.rep_id}",
                         {"id": data.program_id, "name": data.program_name, "achievement": data.badge_name,
                          "badge": data.badge_id})

    async def on_won(self, data: ProgramWonV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await self._tell(uow, envelope, data.rep_id, "program_won",
                         f"program_won:{data.program_id}:{data.place}:{data.rep_id}",
                         {"id": data.program_id, "name": data.program_name, "place": data.place,
                          "points": data.points, "badge": data.badge, "cash": _money(data.cash),
                          "currency": data.currency})

    def handler_map(self) -> HandlerMap:
        return {"ProgramStarted": [self.on_program_started], "ProgramRulesChanged": [self.on_rules_changed],
                "ProgramMilestoneReached": [self.on_milestone], "BadgeEarned": [self.on_badge],
                "ProgramWon": [self.on_won]}
