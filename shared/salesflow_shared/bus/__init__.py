from .base import EventBus, OutgoingMessage, ParkedMessage, PermanentFailure, Subscription, TransientFailure, Unroutable
from .memory import InMemoryBus
from .rabbitmq import RabbitBus

__all__ = ["EventBus", "InMemoryBus", "OutgoingMessage", "ParkedMessage", "PermanentFailure", "RabbitBus",
           "Subscription", "TransientFailure", "Unroutable"]
