from typing import Literal

from salesflow_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """metrics-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    service_name: str = "metrics-service"
    port: int = 8005
    # Deliveries in flight, and so the largest batch the consumer logs in one transaction.
    consumer_prefetch: int = 200
    # How often the worker checks whether a new month/quarter/year started and freezes its forecast;
    # 0 disables the worker (snapshots can still be frozen with POST /v1/forecasts/snapshots).
    forecast_snapshot_interval_s: float = 300.0
    # Where the projector (event log -> read models) runs. "in-process": in this process, beside the consumer
    # and the API (one process does everything; the embedded mode). "separate": not here, because a process
    # started with "only" runs it: that process runs the projector alone (no consumer, no other workers; it
    # still serves /healthz, /readyz and /metrics), so logging and projecting each get a CPU core.
    projector: Literal["in-process", "separate", "only"] = "in-process"
    # The projector applies logged events to the read models in batches of this size; when nothing is
    # pending it looks again after this interval.
    projector_batch_size: int = 1000
    projector_idle_interval_s: float = 0.05
    # How often the worker looks for quotas that were reached (QuotaReached, once per quota); 0 disables it.
    quota_milestone_interval_s: float = 60.0
    # Quotas of periods that ended less than this many days ago are still checked (wins logged late).
    quota_milestone_lookback_days: int = 7
