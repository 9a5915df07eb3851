"""/v1/scoring-rules (per-org scoring, validated) and /v1/leads/custom-fields (typed custom fields)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal
from salesflow_shared.contract import returns
from salesflow_shared.errors import Conflict, FieldError, NotFound, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep, once, once_across
from salesflow_shared.pagination import CursorParam, LimitParam

from ..adapters.repository import new_id
from ..adapters.repository import scoring as scoring_repo
from ..adapters.repository.scoring import StoredCustomField, StoredRule
from ..domain.scoring import RULE_CONFIG
from ..domain.times import as_utc, iso
from ..service_layer import shared_records
from ..service_layer.views import check_if_match
from . import responses as R
from .common import etag_header, json_with_etag, org_setup, page_body, setup_cache

router = APIRouter(prefix="/v1", tags=["scoring", "custom fields"])


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=200)
    points: int = Field(ge=-1000, le=1000)
    enabled: StrictBool = True
    config: dict[str, Any] = Field(description="kind: field_present | email_type | title_keywords | country_in "
                                               "| value_band | source_in, plus that kind's settings")


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(None, min_length=1, max_length=200)
    points: int | None = Field(None, ge=-1000, le=1000)
    enabled: StrictBool | None = None
    config: dict[str, Any] | None = None


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """The rule's config as stored, or 422 naming the offending field (e.g. config.keywords)."""
    try:
        model = RULE_CONFIG.validate_python(config)
    except ValidationError as exc:
        errors = []
        kind = config.get("kind")
        for e in exc.errors():
            loc = [str(p) for p in e["loc"]]
            if loc and loc[0] == kind:
                loc = loc[1:]
            if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = ["kind"]
            errors.append(FieldError(".".join(["config", *loc]), e["msg"].removeprefix("Value error, ")))
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None
    return model.model_dump(mode="json", exclude_none=True)


def rule_to_dict(rule: StoredRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "points": rule.points, "enabled": rule.enabled,
            "config": rule.config, "created_at": iso(rule.created_at), "updated_at": iso(rule.updated_at),
            "version": int(as_utc(rule.updated_at).timestamp() * 1_000_000)}


async def _rule(uow: Any, org_id: str, rule_id: str) -> dict[str, Any]:
    row = await scoring_repo.find_rule(uow.session, org_id, rule_id)
    if row is None:
        raise NotFound(f"no scoring rule {rule_id}")
    return rule_to_dict(row)


@router.post("/scoring-rules", status_code=201, summary="Add a scoring rule (applies to leads scored from now on)",
             operation_id="createScoringRule", **returns(R.ScoringRuleOut, status=201, etag=True,
                                                         checked_beyond_schema=("config",)))
async def create_rule(body: RuleIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                      idem: IdempotencyDep) -> JSONResponse:
    config = validate_config(body.config)
    async def act() -> dict[str, Any]:
        rule_id = new_id()
        await scoring_repo.insert_rule(uow.session, principal.org_id, rule_id, name=body.name, points=body.points,
                                       config=config, enabled=body.enabled, now=uow.clock.now())
        return await _rule(uow, principal.org_id, rule_id)

    response = await once(idem, uow, org_id=principal.org_id, scope="scoring-rules.create",
                          payload=body.model_dump(mode="json"), act=act, status_code=201,
                          headers=etag_header)
    setup_cache(context).invalidate(principal.org_id)
    return response


@router.get("/scoring-rules", summary="The org's scoring rules",
            operation_id="listScoringRules", **returns(R.ScoringRulePage))
async def list_rules(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                     cursor: CursorParam = None) -> dict[str, Any]:
    page = await scoring_repo.rules_page(uow.session, principal.org_id, limit=limit, cursor=cursor)
    return page_body(page, rule_to_dict)


@router.get("/scoring-rules/{rule_id}", summary="A scoring rule",
            operation_id="getScoringRule", **returns(R.ScoringRuleOut, etag=True))
async def get_rule(rule_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    return json_with_etag(await _rule(uow, principal.org_id, rule_id))


@router.patch("/scoring-rules/{rule_id}", summary="Change a scoring rule (If-Match)",
              operation_id="updateScoringRule", **returns(R.ScoringRuleOut, etag=True))
async def patch_rule(rule_id: str, body: RulePatch, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                     if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    rule = await _rule(uow, principal.org_id, rule_id)
    check_if_match(if_match, rule["version"])
    values = body.model_dump(exclude_unset=True)
    for key in ("name", "points", "enabled", "config"):
        if key in values and values[key] is None:
            raise ValidationFailed.single(key, "may not be null")
    if "config" in values:
        values["config"] = validate_config(values["config"])
    await scoring_repo.update_rule(uow.session, principal.org_id, rule_id, uow.clock.now(), **values)
    await uow.commit()
    setup_cache(context).invalidate(principal.org_id)
    return json_with_etag(await _rule(uow, principal.org_id, rule_id))


@router.delete("/scoring-rules/{rule_id}", status_code=204, summary="Remove a scoring rule",
               operation_id="deleteScoringRule")
async def delete_rule(rule_id: str, uow: UowDep, context: ContextDep, principal: AdminPrincipal) -> Response:
    await _rule(uow, principal.org_id, rule_id)
    await scoring_repo.delete_rule(uow.session, principal.org_id, rule_id)
    await uow.commit()
    setup_cache(context).invalidate(principal.org_id)
    return Response(status_code=204)


@router.post("/scoring-rules/rescore", summary="Score every open lead again with the current rules",
             operation_id="rescoreOpenLeads", **returns(R.RescoreResult))
async def rescore_open_leads(context: ContextDep, principal: AdminPrincipal, idem: IdempotencyDep) -> JSONResponse:
    return await once_across(idem, context.uow, org_id=principal.org_id, scope="scoring:rescore", payload=None,
                             act=lambda: _rescore_open_leads(context, principal))


async def _rescore_open_leads(context: Any, principal: Any) -> dict[str, int]:
    setup_cache(context).invalidate(principal.org_id)  # the rules as they are now, not as cached
    return await shared_records.rescore_open_leads(
        context.uow, principal.org_id, lambda session: org_setup(context, session, principal.org_id),
        context.clock.now)


class CustomFieldIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    label: str | None = Field(None, max_length=200)
    type: Literal["string", "number", "boolean", "date", "choice"]
    options: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=200)
    required: StrictBool = False


def _custom_to_dict(field: StoredCustomField) -> dict[str, Any]:
    return {"key": field.key, "label": field.label, "type": field.type, "options": field.options,
            "required": field.required, "created_at": iso(field.created_at)}


@router.post("/leads/custom-fields", status_code=201, summary="Define a typed custom field for the org's leads",
             operation_id="createCustomField", **returns(R.CustomFieldOut, status=201,
                                                         checked_beyond_schema=("options",)))
async def create_custom_field(body: CustomFieldIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                              idem: IdempotencyDep) -> JSONResponse:
    if body.type == "choice" and not body.options:
        raise ValidationFailed.single("options", "a choice field needs its options")
    async def act() -> dict[str, Any]:
        try:
            field = await scoring_repo.insert_custom_field(
                uow.session, principal.org_id, key=body.key, label=body.label, type_=body.type,
                options=body.options, required=body.required, now=uow.clock.now())
        except IntegrityError:
            raise Conflict(f"the custom field {body.key!r} already exists") from None
        return _custom_to_dict(field)

    response = await once(idem, uow, org_id=principal.org_id, scope="custom-fields.create",
                          payload=body.model_dump(mode="json"), act=act, status_code=201)
    setup_cache(context).invalidate(principal.org_id)
    return response


@router.get("/leads/custom-fields", summary="The org's custom lead fields",
            operation_id="listCustomFields", **returns(R.CustomFieldPage))
async def list_custom_fields(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                             cursor: CursorParam = None) -> dict[str, Any]:
    page = await scoring_repo.custom_fields_page(uow.session, principal.org_id, limit=limit, cursor=cursor)
    return page_body(page, _custom_to_dict)
