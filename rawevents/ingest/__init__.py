"""Mixpanel-compatible ingestion (`/track`, `/import`, `/engage`, `/groups`), framework-free.

The route module (rawevents/http/ingest_routes.py) only adapts HTTP: it reads the body under the
size cap, builds an `IngestRequest` and turns the returned `Reply` into a response. Decoding,
normalisation, validation and the response bodies live here, as data.
"""

from rawevents.ingest.pipeline import IngestRequest, ingest
from rawevents.ingest.responses import Reply

__all__ = ["IngestRequest", "Reply", "ingest"]
