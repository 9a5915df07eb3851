"""The two sales processes of the seeds, shipped as pipeline templates an admin instantiates.

Each template is a plain pipeline definition (the same JSON an admin would POST), so it goes through the
same validation as any other pipeline and can be edited afterwards like one.
"""
from __future__ import annotations

from typing import Any

LOST_REASONS = ["no budget", "no need", "chose a competitor", "no decision", "bad timing", "unreachable"]


def _task(title: str, type_: str, amount: int, unit: str = "business_days", *, required: bool = True,
          at: str | None = None) -> dict[str, Any]:
    due: dict[str, Any] = {"amount": amount, "unit": unit}
    if at:
        due["at"] = at
    return {"title": title, "type": type_, "required": required, "due": due, "assignee": {"kind": "owner"}}


OUTBOUND_COLD_CALLING: dict[str, Any] = {
    "name": "Outbound cold calling",
    "description": "Inside reps find leads and cold-call them to set up presentations; outside reps present, "
                   "then proposal, negotiation and decision. Lost leads go to nurturing.",
    "lost_reasons": LOST_REASONS,
    "nurture_days": 90,
    "stages": [
        {"name": "Cold call", "win_probability": "0.05",
         "guidance": "**Inside rep.** Research the company, then call. The only aim of the call is a "
                     "presentation date with the decision maker: record it in the custom field "
                     "`presentation_at`.",
         "goal": {"all": [{"activity": "call", "min_count": 1, "since": "stage_entry"},
                          {"field": "custom.presentation_at", "op": "set"}]},
         "task_templates": [_task("Research the company and the decision maker", "todo", 0, at="17:00"),
                            _task("First cold call", "call", 1),
                            _task("Follow-up call", "call", 3, required=False)]},
        {"name": "Presentation", "win_probability": "0.2",
         "guidance": "**Outside rep.** Present the product to the decision maker; confirm needs, budget and "
                     "timing before leaving.",
         "goal": {"any": [{"activity": "meeting", "min_count": 1, "since": "stage_entry"},
                          {"activity": "demo", "min_count": 1, "since": "stage_entry"}]},
         "task_templates": [_task("Confirm the presentation the day before", "call", 1),
                            _task("Hold the presentation", "meeting", 5)]},
        {"name": "Proposal", "win_probability": "0.4", "is_ask_stage": True,
         "guidance": "Send a written proposal with the value and the expected close date, and **ask for the "
                     "business**.",
         "goal": {"all": [{"activity": "proposal", "min_count": 1, "since": "stage_entry"},
                          {"field": "value", "op": "gt", "value": 0}]},
         "task_templates": [_task("Send the proposal", "email", 2),
                            _task("Call to walk through the proposal", "call", 4, required=False)]},
        {"name": "Negotiation", "win_probability": "0.6",
         "guidance": "Handle objections; agree terms. Leave the stage once every required task is done.",
         "goal": {"all": [{"tasks": "required_done"}, {"field": "expected_close_date", "op": "set"}]},
         "task_templates": [_task("Agree terms and the close date", "meeting", 5)]},
        {"name": "Decision", "win_probability": "0.8",
         "guidance": "Get the signature. Close the lead as won (final value) or lost (reason).",
         "goal": None,
         "task_templates": [_task("Call for the decision", "call", 3)]},
    ],
}

INBOUND_WEB_FORM: dict[str, Any] = {
    "name": "Inbound web form",
    "description": "Web form → automatic qualification and assignment → qualification meeting by email "
                   "invitation → negotiation → decision. Lost leads go back to the email list.",
    "lost_reasons": LOST_REASONS,
    "nurture_days": 30,
    "stages": [
        {"name": "Qualification meeting", "win_probability": "0.1",
         "guidance": "The lead came through the web form and was qualified and assigned automatically. "
                     "Invite them by email to a short qualification meeting and hold it.",
         "goal": {"activity": "meeting", "min_count": 1},
         "task_templates": [_task("Email an invitation to a qualification meeting", "email", 4, "hours"),
                            _task("Hold the qualification meeting", "meeting", 3)]},
        {"name": "Negotiation", "win_probability": "0.4", "is_ask_stage": True,
         "guidance": "Send the offer, **ask for the business** and negotiate terms.",
         "goal": {"all": [{"activity": "proposal", "min_count": 1, "since": "stage_entry"},
                          {"field": "value", "op": "gt", "value": 0}]},
         "task_templates": [_task("Send the offer", "email", 2),
                            _task("Negotiation call", "call", 5, required=False)]},
        {"name": "Decision", "win_probability": "0.7",
         "guidance": "Close the lead as won or lost; lost leads go back to the email list.",
         "goal": None,
         "task_templates": [_task("Call for the decision", "call", 3)]},
    ],
}

TEMPLATES: dict[str, dict[str, Any]] = {
    "outbound-cold-calling": OUTBOUND_COLD_CALLING,
    "inbound-web-form": INBOUND_WEB_FORM,
}
