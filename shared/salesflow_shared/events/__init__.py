# The catalogue is the public surface of this package; the `X as X` spelling marks a name as re-exported.
from .catalogue import *  # noqa: F403
from .catalogue import EVENT_CATALOGUE as EVENT_CATALOGUE
from .catalogue import EVENT_TYPES as EVENT_TYPES
from .catalogue import EventData as EventData
from .catalogue import make_event as make_event
from .catalogue import parse_data as parse_data
from .envelope import Envelope as Envelope
from .envelope import build_envelope as build_envelope
from .envelope import utcnow as utcnow
