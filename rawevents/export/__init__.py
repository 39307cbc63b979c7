"""The Raw Export API core: parameters, plan, rate limits, the streaming gzip body, metadata.

Framework-free: rawevents.http.export_routes and query_routes only adapt HTTP to it.
"""
