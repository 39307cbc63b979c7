"""Event and profile storage behind a small engine-neutral interface (see `base.EventStore`)."""

from rawevents.storage.base import EventStore, ExportPlan, ProfileUpdate, SqlFilter, StoredEvent, TimeSegment

__all__ = ["EventStore", "ExportPlan", "ProfileUpdate", "SqlFilter", "StoredEvent", "TimeSegment"]
