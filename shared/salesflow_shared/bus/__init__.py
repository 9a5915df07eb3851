from .base import (EventBus, OutgoingMessage, ParkedMessage, PermanentFailure, Subscription,  # noqa: F401
                   TransientFailure, Unroutable)
from .memory import InMemoryBus  # noqa: F401
from .rabbitmq import RabbitBus  # noqa: F401
