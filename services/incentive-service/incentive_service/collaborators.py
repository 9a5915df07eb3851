"""incentive-service's collaborators: what it builds once per process (the live leaderboards' wake-ups).

`bootstrap.py` builds them at start-up (ServiceDefinition.collaborators); code reaches them, typed, with
`collaborators(context)`.
"""
from __future__ import annotations

from dataclasses import dataclass

from salesflow_shared.app import ServiceContext

from .adapters.score_signals import ScoreSignals


@dataclass
class Collaborators:
    score_signals: ScoreSignals


async def build_collaborators(context: ServiceContext) -> Collaborators:
    signals = ScoreSignals()
    await signals.start(context)
    return Collaborators(score_signals=signals)


def collaborators(context: ServiceContext) -> Collaborators:
    return context.collaborators_as(Collaborators)
