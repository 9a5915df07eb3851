"""What an admin sets up: templates, sequences, Mailchimp settings and rules, milestone rules, webhook subscriptions.

Each use case checks what the schema of its input cannot (a template that renders, a sequence's steps that name
prospect templates, a rule's pipeline and stage that this org has), then writes in the unit of work's
transaction without committing: the caller stores its idempotent answer in the same transaction and commits.
A refusal is a ServiceError naming the field (422), the missing thing (404) or the conflict (409, 412).
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from salesflow_shared.errors import Conflict, FieldError, NotFound, PreconditionFailed, ValidationFailed
from salesflow_shared.preconditions import check_if_match, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import MailchimpAccount, MailchimpRule, MilestoneRuleRecord, SequenceRecord, Template
from ..adapters.webhooks import WebhookTargetRefused, checked_addresses
from ..domain.mailchimp_lists import OUTCOME_WORDS, STAGE_TRIGGERS
from ..domain.rendering import validate_template
from ..domain.timing import zone


# ====================================================================== templates
def check_template(values: Mapping[str, Any]) -> None:
    """A template is checked by rendering it: a one-line subject, only placeholders it knows."""
    errors = validate_template(dict(values))
    if errors:
        raise ValidationFailed("; ".join(str(e) for e in errors),
                               errors=[FieldError(e.part, e.message) for e in errors])


async def _key_free(uow: UnitOfWork, org_id: str, key: str | None, except_id: str | None = None) -> None:
    if key is not None and await repository.template_key_taken(uow.session, org_id, key, except_id=except_id):
        raise Conflict(f"another template already has the key {key!r}")


async def find_template(uow: UnitOfWork, org_id: str, template_id: str) -> Template:
    template = await repository.get_template(uow.session, org_id, template_id=template_id)
    if template is None:
        raise NotFound(f"no template {template_id}")
    return template


def template_etag(template: Template) -> str:
    return strong_etag(template.version)


async def create_template(uow: UnitOfWork, org_id: str, values: Mapping[str, Any], now: datetime) -> Template:
    """A new template (version 1) whose key, if it has one, no other template of the org has."""
    check_template(values)
    await _key_free(uow, org_id, values.get("key"))
    template = Template(id=str(uuid.uuid4()), org_id=org_id, **values, version=1, created_at=now, updated_at=now)
    await repository.add_template(uow.session, template)
    return template


async def replace_template(uow: UnitOfWork, org_id: str, template_id: str, values: Mapping[str, Any], *,
                           if_match: str | None, now: datetime) -> None:
    """Replace the template the caller read (`if_match`: its ETag); its version goes up by one."""
    current = await find_template(uow, org_id, template_id)
    check_if_match(if_match, template_etag(current), what="template")
    check_template(values)
    await _key_free(uow, org_id, values.get("key"), except_id=template_id)
    if not await repository.replace_template(uow.session, org_id, template_id, version=current.version,
                                             values=dict(values), now=now):
        raise PreconditionFailed("the template changed since you read it")


# ====================================================================== sequences
async def check_sequence(uow: UnitOfWork, org_id: str, values: Mapping[str, Any]) -> None:
    """A stage_entry sequence names its stage (and only it does), a business time zone is an IANA one, and every
    step sends one of the org's prospect templates; every problem is named at once."""
    errors: list[FieldError] = []
    trigger, stage_id, timezone = values["trigger"], values.get("stage_id"), values.get("business_timezone")
    if trigger == "stage_entry" and not stage_id:
        errors.append(FieldError("stage_id", "a stage_entry sequence needs the stage it starts in"))
    if trigger != "stage_entry" and stage_id:
        errors.append(FieldError("stage_id", "only stage_entry sequences start in a stage"))
    if timezone and zone(timezone, "").key != timezone:
        errors.append(FieldError("business_timezone", "not an IANA time zone"))
    steps = values["steps"]
    found = await repository.template_audiences(uow.session, org_id, {s["template_id"] for s in steps})
    for i, step in enumerate(steps):
        if step["template_id"] not in found:
            errors.append(FieldError(f"steps.{i}.template_id", "no such template"))
        elif found[step["template_id"]] != "prospect":
            errors.append(FieldError(f"steps.{i}.template_id", "sequence steps need a prospect template"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


async def create_sequence(uow: UnitOfWork, org_id: str, values: Mapping[str, Any], now: datetime) -> SequenceRecord:
    """A new sequence (`values` as SequenceRecord's fields, steps as dicts); leads are enrolled from the next event
    that matches its trigger."""
    await check_sequence(uow, org_id, values)
    sequence = SequenceRecord(id=str(uuid.uuid4()), org_id=org_id, **values, created_at=now, updated_at=now)
    await repository.add_sequence(uow.session, sequence)
    return sequence


async def find_sequence(uow: UnitOfWork, org_id: str, sequence_id: str) -> SequenceRecord:
    sequence = await repository.get_sequence(uow.session, org_id, sequence_id)
    if sequence is None:
        raise NotFound(f"no sequence {sequence_id}")
    return sequence


async def deactivate_sequence(uow: UnitOfWork, org_id: str, sequence_id: str, now: datetime) -> SequenceRecord:
    """The sequence starts no new enrollment and sends no further step; returned as it now is."""
    await find_sequence(uow, org_id, sequence_id)
    await repository.deactivate_sequence(uow.session, org_id, sequence_id, now)
    return await find_sequence(uow, org_id, sequence_id)


# ====================================================================== Mailchimp
def mailchimp_settings_etag(account: MailchimpAccount) -> str:
    """A digest of what the settings hold (the key included, never shown), so any change makes a new ETag."""
    updated = account.updated_at
    updated = (updated if updated.tzinfo else updated.replace(tzinfo=UTC)).astimezone(UTC)  # SQLite: naive
    return '"' + hashlib.sha256(f"{account.api_key}|{account.nurture_list_id}|{account.nurture_tag}|"
                                f"{updated.isoformat()}".encode()).hexdigest()[:16] + '"'


async def save_mailchimp_settings(uow: UnitOfWork, org_id: str, values: Mapping[str, Any], *,
                                  if_match: str | None, now: datetime) -> MailchimpAccount:
    """Set the org's Mailchimp key and nurture list over the settings the caller read (`if_match`: their ETag,
    or "0" for the first setting, so two admins setting it at once cannot both win)."""
    current = await repository.get_mailchimp_account(uow.session, org_id, for_update=True)
    check_if_match(if_match, mailchimp_settings_etag(current) if current is not None else None,
                   what="Mailchimp settings")
    account = MailchimpAccount(org_id=org_id, **values, updated_at=now)
    await repository.save_mailchimp_account(uow.session, account, exists=current is not None)
    return account


async def check_mailchimp_rule(uow: UnitOfWork, org_id: str, values: Mapping[str, Any]) -> None:
    """422 naming the field: the pipeline must be one this org has (and has not archived), a stage rule needs a
    stage of that pipeline (of any of the org's pipelines when it names none), an outcome rule has no stage, and an
    outcome is not a stage. This service knows the org's pipelines from pipeline-service's PipelineDefined events
    (and a pipeline's stages from its leads' StageAdvanced until then), so a pipeline created a moment ago may not
    be known here for that moment."""
    trigger, pipeline_id, stage_id = values["trigger"], values.get("pipeline_id"), values.get("stage_id")
    pipelines = await repository.pipeline_stage_ids(uow.session, org_id)
    if pipeline_id is not None and pipeline_id not in pipelines:
        raise ValidationFailed.single("pipeline_id", f"no pipeline '{pipeline_id}' in this org (or it is archived)")
    if trigger in STAGE_TRIGGERS:
        if stage_id is None:
            raise ValidationFailed.single("stage_id", f"a {trigger} rule names the stage")
        if stage_id.lower() in OUTCOME_WORDS:
            raise ValidationFailed.single("stage_id", f"'{stage_id}' is not a stage but an outcome: use "
                                                      f"trigger '{stage_id.lower()}' without a stage_id")
        if pipeline_id is not None:
            if stage_id not in pipelines[pipeline_id]:
                raise ValidationFailed.single("stage_id", f"no stage '{stage_id}' in pipeline '{pipeline_id}'")
        elif not any(stage_id in stage_ids for stage_ids in pipelines.values()):
            raise ValidationFailed.single("stage_id", f"no stage '{stage_id}' in any pipeline of this org")
    elif stage_id is not None:
        raise ValidationFailed.single("stage_id", f"a {trigger} rule holds in any stage: leave stage_id out")


async def create_mailchimp_rule(uow: UnitOfWork, org_id: str, values: Mapping[str, Any],
                                now: datetime) -> MailchimpRule:
    await check_mailchimp_rule(uow, org_id, values)
    rule = MailchimpRule(id=str(uuid.uuid4()), org_id=org_id, **values, created_at=now)
    await repository.add_mailchimp_rule(uow.session, rule)
    return rule


# ====================================================================== milestones
def check_milestone_rule(values: Mapping[str, Any]) -> None:
    if values["kind"] == "stage_exit_above_value" and not values.get("stage_id"):
        raise ValidationFailed.single("stage_id", "a stage_exit_above_value rule needs the stage")


async def create_milestone_rule(uow: UnitOfWork, org_id: str, values: Mapping[str, Any],
                                now: datetime) -> MilestoneRuleRecord:
    check_milestone_rule(values)
    rule = MilestoneRuleRecord(id=str(uuid.uuid4()), org_id=org_id, **values, created_at=now)
    await repository.add_milestone_rule(uow.session, rule)
    return rule


# ====================================================================== webhook subscriptions
async def check_webhook_target(url: str, host: str | None, *, private_networks_allowed: bool) -> None:
    """The URL must lead to public addresses only (each address its host resolves to), unless the deployment
    allows private networks; the check is repeated before each delivery."""
    if private_networks_allowed:
        return
    try:
        await checked_addresses(url)
    except WebhookTargetRefused as exc:
        raise ValidationFailed.single("url", f"must lead to a public address: {exc}") from exc
    except OSError as exc:
        raise ValidationFailed.single("url", f"the host {host} does not resolve") from exc


async def subscribe_webhook(uow: UnitOfWork, org_id: str, *, url: str, reasons: list[str], rep_id: str | None,
                            secret: str | None, now: datetime) -> repository.WebhookSubscription:
    """A new active subscription (its target checked first with check_webhook_target); without a secret of the
    caller's one is made, shown once in the answer."""
    subscription = repository.WebhookSubscription(
        id=str(uuid.uuid4()), org_id=org_id, url=url, secret=secret or secrets.token_urlsafe(32),
        reasons=list(reasons), rep_id=rep_id, active=True, created_at=now)
    await repository.add_webhook_subscription(uow.session, subscription)
    return subscription
