from .catalogue import *  # noqa: F401,F403 - the catalogue is the public surface of this package
from .catalogue import EVENT_CATALOGUE, EVENT_TYPES, EventData, make_event, parse_data  # noqa: F401
from .envelope import Envelope, build_envelope, utcnow  # noqa: F401
