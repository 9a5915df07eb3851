"""Event handlers, registered in one explicit map (each runs in its own transaction with the inbox)."""
from salesflow_shared.consumer import HandlerMap

EVENT_HANDLERS: HandlerMap = {}
