"""How an outbound attempt failed: worth retrying later, or never."""


class TransientDeliveryError(Exception):
    """Timeouts, refused connections, 4xx SMTP replies, HTTP 429/5xx: try again later."""


class PermanentDeliveryError(Exception):
    """Rejected for good (bad address, compliance state, 4xx API answer): recorded, never retried."""
