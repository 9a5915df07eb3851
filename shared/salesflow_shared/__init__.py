"""The one library every Salesflow service uses.

Only what every service needs lives here: settings, database access, the event envelope and catalogue,
the bus, the transactional outbox and the inbox, auth, problem+json errors, pagination, idempotency,
logging and the health/metrics endpoints. No service's own tables or business rules belong here.
"""
