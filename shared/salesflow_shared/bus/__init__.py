from .base import EventBus, OutgoingMessage, ParkedMessage, PermanentFailure, Subscription, TransientFailure, Unroutable  # noqa: F401
from .memory import InMemoryBus  # noqa: F401
from .rabbitmq import RabbitBus  # noqa: F401
