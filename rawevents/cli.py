"""`rawevents` command line: one click group; each subcommand is registered here.

Server-side commands (serve, project, service-account, retention, backup, restore; their logic
is in rawevents.admin.commands) take their defaults from the settings
table (and so from the RAWEVENTS_* environment variables). `export` and `import` are clients of
a running server and thin layers over rawevents.client. Every failure is one line on stderr
(`rawevents: …`) and exit status 2, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from rawevents import __version__
from rawevents.admin import commands
from rawevents.errors import RawEventsError
from rawevents.identity import DEFAULT_MODE, MODES
from rawevents.settings import CONFIG_ENV, PRIVATE_UMASK, SETTINGS, SETTINGS_BY_NAME, Config, load_config

if TYPE_CHECKING:  # the client is imported by its commands only: `serve` starts without it
    from rawevents.client import Connection
    from rawevents.client.formats import Format

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_URL = "http://127.0.0.1:8000"


def _server_config(command: Callable[..., None]) -> Callable[..., None]:
    """`--data-dir` and `--store` (else their RAWEVENTS_* variables), handed to the command as
    its resolved `config`: with a `clickhouse://` store the registry commands write to ClickHouse."""

    @click.option("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)
    @click.option("--store", default=None, metavar="STORE", help=SETTINGS_BY_NAME["store"].help)
    @functools.wraps(command)
    def with_config(*args: Any, data_dir: str | None, store: str | None, **kwargs: Any) -> None:
        command(*args, config=load_config(flags={"data_dir": data_dir, "store": store}), **kwargs)

    return with_config


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rawevents")
def cli() -> None:
    """Self-hosted Mixpanel-compatible event store."""


def _setting_options(command: F) -> F:
    """One option per row of the settings table: `--name-with-dashes VALUE` (text, checked by the
    setting's parser like the environment's), booleans as `--name/--no-name`."""
    for setting in reversed(SETTINGS):
        flag = "--" + setting.name.replace("_", "-")
        if isinstance(setting.default, bool):
            option = click.option(f"{flag}/--no-{flag[2:]}", setting.name, default=None, help=setting.help)
        else:
            option = click.option(flag, setting.name, default=None, metavar="VALUE", help=setting.help)
        command = option(command)
    return command


@cli.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"TOML file of settings (default: ${CONFIG_ENV}); environment and flags override it.",
)
@_setting_options
def serve(config_file: Path | None, **flags: Any) -> None:
    """Run the HTTP server."""
    from rawevents.server import serve as run_server

    run_server(load_config(config_file=config_file, flags=flags))


@cli.command()
@click.option("--from", "source", type=click.Choice(["duckdb"]), required=True, help="Store to copy from.")
@click.option("--to", "target", required=True, help="Store to copy into: chdb, or a clickhouse:// URL.")
@click.option("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)
def migrate(source: str, target: str, data_dir: str | None) -> None:
    """Copy the embedded DuckDB store's events and profiles into another store (re-runnable)."""
    from rawevents.storage.migrate import migrate_into

    config = load_config(flags={"data_dir": data_dir, "store": target})
    _print(migrate_into(config, lambda n: click.echo(f"{n} events", err=True)))


@cli.group()
def project() -> None:
    """Manage projects."""


_LEGACY_HELP = (
    "Keep the plaintext secret so the retired api_key + expire + sig signature works "
    "(otherwise only its SHA-256 digest is stored)."
)


_ID_MERGE_HELP = (
    "Identity merge API: simplified ($device_id/$user_id) or original ($identify, $create_alias,"
    " $merge); docs/identity.md."
)


@project.command("create")
@click.option("--name", required=True, help="Name of the project.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the project.")
@click.option("--legacy-signature", is_flag=True, help=_LEGACY_HELP)
@click.option(
    "--id-merge", type=click.Choice(MODES), default=DEFAULT_MODE, show_default=True, help=_ID_MERGE_HELP
)
@_server_config
def project_create(name: str, timezone: str, legacy_signature: bool, id_merge: str, config: Config) -> None:
    """Create a project and print its credentials as JSON (the only time its secret is shown)."""
    _print(commands.project_create(config, name, timezone, legacy_signature, id_merge))


@project.command("set-id-merge")
@click.option("--project", "project_id", type=int, required=True, help="The project's id.")
@click.option("--mode", type=click.Choice(MODES), required=True, help=_ID_MERGE_HELP)
@_server_config
def project_set_id_merge(project_id: int, mode: str, config: Config) -> None:
    """Change a project's identity merge API; refused once the project has events."""
    _print(commands.project_set_id_merge(config, project_id, mode))


@project.command("list")
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Include api_secret: the plaintext where kept for legacy signatures, else null.",
)
@_server_config
def project_list(show_secrets: bool, config: Config) -> None:
    """Print every project as a JSON array, without secrets."""
    _print(commands.project_list(config, show_secrets))


@project.command("rotate-secret")
@click.option("--project", "project_id", type=int, required=True, help="The project's id.")
@click.option("--legacy-signature/--no-legacy-signature", default=None, help=_LEGACY_HELP)
@_server_config
def project_rotate_secret(project_id: int, legacy_signature: bool | None, config: Config) -> None:
    """Print a new secret for a project; the old one stops working at once."""
    _print(commands.project_rotate_secret(config, project_id, legacy_signature))


@project.command("delete")
@click.option("--project", "project_id", type=int, required=True, help="The project's id.")
@_server_config
def project_delete(project_id: int, config: Config) -> None:
    """Delete a project, its credentials and all its events and profiles."""
    _print(commands.project_delete(config, project_id))


@project.command("set-retention")
@click.option("--project", "project_id", type=int, required=True, help="The project's id.")
@click.option(
    "--days", type=click.IntRange(0), required=True, help="Calendar days kept before today; 0: forever."
)
@_server_config
def project_set_retention(project_id: int, days: int, config: Config) -> None:
    """Keep a project's last N calendar days (and today); older events are dropped."""
    _print(commands.project_set_retention(config, project_id, days))


@cli.group("service-account")
def service_account() -> None:
    """Manage service accounts."""


@service_account.command("create")
@click.option("--project", "project_id", type=int, required=True, help="Project the account may use.")
@click.option("--name", default="service-account", show_default=True, help="Name of the account.")
@click.option("--expires", type=int, default=None, metavar="DAYS", help="Expire after DAYS days.")
@_server_config
def service_account_create(project_id: int, name: str, expires: int | None, config: Config) -> None:
    """Create a service account with access to a project (the only time its secret is shown)."""
    _print(commands.service_account_create(config, project_id, name, expires))


@service_account.command("list")
@click.option("--project", "project_id", type=int, default=None, help="Only accounts with access to it.")
@_server_config
def service_account_list(project_id: int | None, config: Config) -> None:
    """Print service accounts as a JSON array, without secrets."""
    _print(commands.service_account_list(config, project_id))


@service_account.command("revoke")
@click.option("--username", required=True, help="The account's username.")
@_server_config
def service_account_revoke(username: str, config: Config) -> None:
    """Revoke a service account at once."""
    _print(commands.service_account_revoke(config, username))


@cli.group()
def retention() -> None:
    """Apply project retention."""


@retention.command("apply")
@click.option("--project", "project_id", type=int, default=None, help="Only this project.")
@_server_config
def retention_apply(project_id: int | None, config: Config) -> None:
    """Drop every project's events older than its retention now."""
    _print(commands.retention_apply(config, project_id))


@cli.command()
@click.option("--out", required=True, help="New (or empty) directory for the backup.")
@_server_config
def backup(out: str, config: Config) -> None:
    """Write a consistent snapshot of the store and registry (also while the server runs)."""
    _print(commands.backup_write(config, out))


@cli.command()
@click.option("--from", "source", required=True, help="A directory written by backup.")
@_server_config
def restore(source: str, config: Config) -> None:
    """Rebuild an empty data directory from a backup."""
    _print(commands.backup_restore(config, source))


@cli.group()
def pipeline() -> None:
    """Deliver a project's events to object storage, continuously (docs/pipelines.md)."""


@pipeline.command("create")
@click.option("--project", "project_id", type=int, required=True, help="The project's id.")
@click.option(
    "--to", "to", required=True, help="file:///path, s3://bucket/prefix, gs://bucket/prefix or az://…"
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl.gz", "parquet"]),
    default="jsonl.gz",
    show_default=True,
    help="Objects' format: the export's lines gzipped, or Parquet with typed columns.",
)
@click.option("--every", default="1h", show_default=True, help="Seconds between runs, or 15m, 1h, 1d.")
@click.option("--from", "from_day", default=None, metavar="DAY", help="First day (YYYY-MM-DD); default all.")
@click.option("--event", "events", multiple=True, help="Only this event (repeatable).")
@click.option("--where", default=None, help="Segmentation expression filtering the events.")
@click.option("--name", default=None, help="Name of the pipeline (default: from project and destination).")
@_server_config
def pipeline_create(
    project_id: int,
    to: str,
    fmt: str,
    every: str,
    from_day: str | None,
    events: tuple[str, ...],
    where: str | None,
    name: str | None,
    config: Config,
) -> None:
    """Create a pipeline (the server runs it) and print it as JSON."""
    from rawevents.pipelines import commands as pipelines

    with commands.registry_of(config) as registry:
        _print(
            pipelines.create(
                registry,
                project_id,
                to,
                fmt=fmt,
                every=every,
                from_day=from_day,
                events=events,
                where=where,
                name=name,
            )
        )


@pipeline.command("list")
@click.option("--project", "project_id", type=int, default=None, help="Only this project's pipelines.")
@_server_config
def pipeline_list(project_id: int | None, config: Config) -> None:
    """Print every pipeline as a JSON array."""
    from rawevents.pipelines import commands as pipelines

    with commands.registry_of(config) as registry:
        _print(pipelines.listing(registry, project_id))


def _pipeline_action(action: str, doc: str) -> None:
    @pipeline.command(action, help=doc)
    @click.argument("name")
    @_server_config
    def command(name: str, config: Config) -> None:
        from rawevents.pipelines import commands as pipelines

        with commands.registry_of(config) as registry:
            _print(getattr(pipelines, action)(registry, name))


_pipeline_action("status", "Print a pipeline, its run in progress and its latest runs as JSON.")
_pipeline_action("pause", "Start no run until resumed (a run in progress waits too).")
_pipeline_action("resume", "Start runs again.")
_pipeline_action("delete", "Forget a pipeline (the objects it wrote stay).")


def _print(payload: object) -> None:
    click.echo(json.dumps(payload))


# -- clients of a running server -------------------------------------------------------------


def _client_options(command: F) -> F:
    options = [
        click.option(
            "--url",
            envvar="RAWEVENTS_URL",
            default=DEFAULT_URL,
            show_default=True,
            help="Base URL of the server (env RAWEVENTS_URL).",
        ),
        click.option("--secret", default=None, help="Project secret (or env RAWEVENTS_SECRET)."),
        click.option(
            "--service-account",
            default=None,
            metavar="USER:SECRET",
            help="Service account (or env RAWEVENTS_SERVICE_ACCOUNT); needs --project-id.",
        ),
        click.option(
            "--project-id", type=int, default=None, help="Project id (or env RAWEVENTS_PROJECT_ID)."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _connection(
    url: str, secret: str | None, service_account: str | None, project_id: int | None
) -> Connection:
    from rawevents.client import Connection, Credentials

    return Connection(url, Credentials.resolve(secret, service_account, project_id))


_DAY = click.DateTime(formats=["%Y-%m-%d"])


@cli.command("export")
@_client_options
@click.option(
    "--from",
    "from_date",
    type=_DAY,
    default=None,
    metavar="DAY",
    help="First day, YYYY-MM-DD (project-local); required unless --identity-mappings.",
)
@click.option(
    "--to",
    "to_date",
    type=_DAY,
    default=None,
    metavar="DAY",
    help="Last day, YYYY-MM-DD, inclusive; required unless --identity-mappings.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="One file, named with its format's extension (x.jsonl, x.jsonl.gz, x.csv, x.parquet), "
    "or a directory of one file per day.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "jsonl.gz", "csv", "parquet"]),
    default=None,
    help="Output format (CSV flattens properties into columns; Parquet keeps types); default: "
    "--out's extension, else jsonl.gz.",
)
@click.option(
    "--split",
    type=click.Choice(["day", "none"]),
    default=None,
    help="One file per project-local day (a directory), or a single file; default: none when "
    "--out has a format's extension, else day.",
)
@click.option(
    "--utc",
    is_flag=True,
    help="Write `time` as the UTC instant instead of project-local time (Parquet: a timestamp column).",
)
@click.option("--timezone", default=None, help="The project's IANA zone for --utc (default: ask the server).")
@click.option(
    "--incremental",
    type=click.Path(path_type=Path),
    default=None,
    metavar="STATE_FILE",
    help="Write only what is new since the run that saved STATE_FILE, under new file names.",
)
@click.option(
    "--lookback-days",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="With --incremental against a server without cursors (Mixpanel): days re-fetched.",
)
@click.option("--event", "events", multiple=True, help="Only this event (repeatable).")
@click.option("--where", default=None, help="Segmentation expression filtering the events.")
@click.option(
    "--identity-mappings",
    is_flag=True,
    help="Write the identity mappings table (distinct_id, resolved_distinct_id) to --out instead of events.",
)
@click.option("--username", default=None, hidden=True, help="Old spelling: --service-account USER:SECRET.")
def export_command(
    url: str,
    secret: str | None,
    service_account: str | None,
    project_id: int | None,
    from_date: dt.datetime | None,
    to_date: dt.datetime | None,
    out: Path,
    fmt: str | None,
    split: str | None,
    utc: bool,
    timezone: str | None,
    incremental: Path | None,
    lookback_days: int,
    events: tuple[str, ...],
    where: str | None,
    identity_mappings: bool,
    username: str | None,
) -> None:
    """Export a server's events to files: resumable, incremental, in JSONL, CSV or Parquet."""
    from rawevents.client import ExportOptions, TerminalProgress, export
    from rawevents.client.exporter import Split, output_layout
    from rawevents.client.localtime import load_zone

    if username is not None and secret is not None:
        service_account, secret = f"{username}:{secret}", None
    layout = output_layout(out, cast("Format | None", fmt), cast("Split | None", split))
    if timezone is not None:
        load_zone(timezone)
        if not utc:
            raise click.UsageError("--timezone is the project's zone for --utc: pass --utc too")
    if identity_mappings:
        if split is not None or layout[1] == "day":
            raise click.UsageError("--identity-mappings writes one file: name it x.jsonl, x.csv, …")
        _export_mappings(url, secret, service_account, project_id, out, layout[0])
        return
    if from_date is None or to_date is None:
        raise click.UsageError("--from and --to are required (unless --identity-mappings)")
    options = ExportOptions(
        from_date.date(),
        to_date.date(),
        out,
        format=layout[0],
        split=layout[1],
        utc=utc,
        timezone=timezone,
        events=events,
        where=where,
        incremental=incremental,
        lookback_days=lookback_days,
    )
    progress = TerminalProgress()
    with _connection(url, secret, service_account, project_id) as server:
        server.on_retry = progress.retrying
        result = export(server, options, progress)
    written = [f for f in result.files if f.path is not None and not f.skipped]
    skipped = sum(1 for f in result.files if f.skipped)
    click.echo(
        f"rawevents export: {_count(result.events, 'event')} in {_count(len(written), 'file')} "
        f"({skipped:,} already complete), {_count(result.bytes, 'byte')} in {result.seconds:.1f} s -> {out}",
        err=True,
    )


def _count(number: int, noun: str) -> str:
    """`1 file`, `2 files`, `1,000 events`."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _export_mappings(
    url: str, secret: str | None, service_account: str | None, project_id: int | None, out: Path, fmt: Format
) -> None:
    from rawevents.client.mappings import fetch_mappings, write_mappings

    with _connection(url, secret, service_account, project_id) as server:
        rows, _ = fetch_mappings(server)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_mappings(rows, out, fmt)
    click.echo(f"rawevents export: {len(rows):,} identity mappings -> {out}", err=True)


@cli.command("import")
@_client_options
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--timezone", default=None, help="The files' `time` is local to this zone (Mixpanel exports).")
@click.option(
    "--concurrency", type=click.IntRange(1, 32), default=4, show_default=True, help="Requests in flight."
)
@click.option(
    "--batch-events",
    type=click.IntRange(1, 2000),
    default=2000,
    show_default=True,
    help="Events per request.",
)
@click.option(
    "--restore/--no-restore",
    default=True,
    show_default=True,
    help="Store events as given (rawevents keeps their server properties), so they export identically.",
)
def import_command(
    url: str,
    secret: str | None,
    service_account: str | None,
    project_id: int | None,
    files: tuple[Path, ...],
    timezone: str | None,
    concurrency: int,
    batch_events: int,
    restore: bool,
) -> None:
    """Import JSONL, JSONL.gz or Parquet files (e.g. an export) into a server's /import."""
    from rawevents.client import ImportOptions, TerminalProgress, import_files

    options = ImportOptions(
        timezone=timezone, batch_events=batch_events, concurrency=concurrency, restore=restore
    )
    progress = TerminalProgress()
    with _connection(url, secret, service_account, project_id) as server:
        server.on_retry = progress.retrying
        result = import_files(server, list(files), options, progress)
    for failure in result.failures[:MAX_FAILURES_SHOWN]:
        click.echo(f"{failure.file}:{failure.line}: {failure.message}", err=True)
    if len(result.failures) > MAX_FAILURES_SHOWN:
        click.echo(f"… and {len(result.failures) - MAX_FAILURES_SHOWN} more failures", err=True)
    click.echo(
        f"rawevents import: {_count(result.imported, 'event')} imported, {len(result.failures):,} failed, "
        f"{_count(result.files, 'file')}, {_count(result.bytes, 'byte')} sent in {result.seconds:.1f} s",
        err=True,
    )
    if result.failures:
        raise click.exceptions.Exit(1)


MAX_FAILURES_SHOWN = 20
# Modules of optional dependencies, and the extra that installs each (pyproject.toml).
OPTIONAL_MODULES = {"chdb": "clickhouse"}


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)  # every file and directory this process creates is its user's only
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="rawevents", standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("rawevents: interrupted", err=True)
        return 130
    except RawEventsError as exc:
        click.echo(f"rawevents: {exc.message}", err=True)
        return 2
    except ImportError as exc:  # an optional dependency missing: say which extra installs it
        extra = OPTIONAL_MODULES.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        click.echo(f"rawevents: {exc.name} is not installed: pip install 'rawevents[{extra}]'", err=True)
        return 2
    except OSError as exc:  # disk full, permission denied: still one line, no traceback
        click.echo(f"rawevents: {exc}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
