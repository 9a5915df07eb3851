"""The service's HTTP API (docs/architecture.md: /v1/leads, /v1/contacts, /v1/companies, /v1/activities, /v1/forms,
/v1/imports, /v1/scoring-rules)."""
from fastapi import APIRouter

from . import forms_api, imports_api, leads_api, records_api, scoring_api, timeline_api

router = APIRouter()
router.include_router(forms_api.intake_router)
# scoring_api first: /v1/leads/custom-fields must win over /v1/leads/{lead_id}
router.include_router(scoring_api.router)
router.include_router(leads_api.router)
router.include_router(timeline_api.router)
router.include_router(records_api.router)
router.include_router(forms_api.router)
router.include_router(imports_api.router)
