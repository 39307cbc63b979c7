"""rawevents: a self-hosted event store that speaks Mixpanel's ingestion and Raw Data Export APIs."""

__version__ = "0.1.0"
