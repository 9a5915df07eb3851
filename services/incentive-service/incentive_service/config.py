from salesflow_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """incentive-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    service_name: str = "incentive-service"
    port: int = 8006
    # How often the recalculation worker looks for statements whose inputs changed (a win, a quota, a rate,
    # a plan); each one is recomputed once however many changes piled up. 0 disables the worker (tests run
    # it by hand; statements are then computed on request only).
    recalculation_interval_s: float = 0.2
    # Statements recomputed per transaction of the worker.
    recalculation_batch_size: int = 50
    # Incentive programs: how often running programs whose period is over are finished (places awarded, winners
    # told). 0 disables the sweep (tests finish programs by hand).
    program_finish_interval_s: float = 5.0
