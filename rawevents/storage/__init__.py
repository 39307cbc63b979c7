"""Event and profile storage behind one typed contract (`base.EventStore`); `open_store` picks
the engine a Config names. Every SQL statement lives in this package (or in `where.printer`)."""

from rawevents.storage.base import (
    EventStore,
    ExportPlan,
    ProfilePage,
    ProfileQuery,
    ProfileUpdate,
    StoredEvent,
)
from rawevents.storage.factory import open_registry, open_store
from rawevents.timeutil import TimeSegment

__all__ = [
    "EventStore",
    "ExportPlan",
    "ProfilePage",
    "ProfileQuery",
    "ProfileUpdate",
    "StoredEvent",
    "TimeSegment",
    "open_registry",
    "open_store",
]
