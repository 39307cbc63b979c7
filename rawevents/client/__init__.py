"""The typed Python client of rawevents (and of any Mixpanel-compatible export/import endpoint).

`rawevents export` and `rawevents import` are thin layers over this package (docs/client.md):

    from rawevents.client import Connection, Credentials, ExportOptions, export
    with Connection("http://127.0.0.1:8000", Credentials.resolve(secret="…")) as server:
        result = export(server, ExportOptions(from_date, to_date, Path("out"), format="parquet"))
"""

from rawevents.client.exporter import Exporter, ExportOptions, ExportResult, FileResult, export
from rawevents.client.formats import FORMATS, Format, read_parquet_records
from rawevents.client.importer import Importer, ImportOptions, ImportResult, RecordFailure, import_files
from rawevents.client.localtime import LocalToUtc
from rawevents.client.progress import Progress, SilentProgress, TerminalProgress
from rawevents.client.transport import ClientError, Connection, Credentials, HttpError, RetryPolicy

__all__ = [
    "FORMATS",
    "ClientError",
    "Connection",
    "Credentials",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "FileResult",
    "Format",
    "HttpError",
    "ImportOptions",
    "ImportResult",
    "Importer",
    "LocalToUtc",
    "Progress",
    "RecordFailure",
    "RetryPolicy",
    "SilentProgress",
    "TerminalProgress",
    "export",
    "import_files",
    "read_parquet_records",
]
