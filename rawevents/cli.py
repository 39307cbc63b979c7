"""`rawevents` command line: serve, projects, service accounts, retention, backup/restore, export.

Flags default to the settings table (and so to the RAWEVENTS_* environment variables). Commands
that touch stored events hand their work to a running server through the registry, or do it
themselves when none runs (see `rawevents.lifecycle.handoff`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rawevents.errors import RawEventsError
from rawevents.export import download
from rawevents.lifecycle import backup, handoff, tasks
from rawevents.projects import SUCCESS, Registry
from rawevents.settings import SETTINGS_BY_NAME, Config, load_config
from rawevents.storage.base import EventStore


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)


def _command(commands: Any, name: str, help_text: str, *, data_dir: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
    if data_dir:
        _data_dir_arg(parser)
    return parser


def _legacy_flag(parser: argparse.ArgumentParser, default: bool | None) -> None:
    parser.add_argument(
        "--legacy-signature",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="Keep the plaintext secret so the retired api_key + expire + sig signature works "
        "(otherwise only its SHA-256 digest is stored).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawevents", description="Self-hosted Mixpanel-compatible event store."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = _command(commands, "serve", "Run the HTTP server.")
    serve.add_argument("--host", default=None, help=SETTINGS_BY_NAME["host"].help)
    serve.add_argument("--port", type=int, default=None, help=SETTINGS_BY_NAME["port"].help)
    serve.add_argument("--demo", action="store_true", default=None, help=SETTINGS_BY_NAME["demo"].help)

    project = commands.add_parser("project", help="Manage projects.")
    project_commands = project.add_subparsers(dest="subcommand", required=True)
    create = _command(project_commands, "create", "Create a project and print its credentials as JSON.")
    create.add_argument("--name", required=True)
    create.add_argument("--timezone", default="UTC", help="IANA time zone of the project (default UTC).")
    _legacy_flag(create, False)
    listing = _command(project_commands, "list", "Print every project as a JSON array (no secrets).")
    listing.add_argument(
        "--show-secrets",
        action="store_true",
        help="Include api_secret: the plaintext where kept for legacy signatures, else null.",
    )
    rotate = _command(
        project_commands, "rotate-secret", "Replace a project's secret (the old one stops at once)."
    )
    rotate.add_argument("--project", type=int, required=True)
    _legacy_flag(rotate, None)
    delete = _command(
        project_commands, "delete", "Delete a project, its credentials and all its events and profiles."
    )
    delete.add_argument("--project", type=int, required=True)
    retention = _command(
        project_commands, "set-retention", "Keep a project's events for N days (0: keep forever)."
    )
    retention.add_argument("--project", type=int, required=True)
    retention.add_argument("--days", type=int, required=True)

    account = commands.add_parser("service-account", help="Manage service accounts.")
    account_commands = account.add_subparsers(dest="subcommand", required=True)
    sa_create = _command(account_commands, "create", "Create a service account with access to a project.")
    sa_create.add_argument("--project", type=int, required=True)
    sa_create.add_argument("--name", default="service-account")
    sa_create.add_argument(
        "--expires", type=int, default=None, metavar="DAYS", help="Expire after DAYS days."
    )
    sa_list = _command(account_commands, "list", "Print service accounts as a JSON array (no secrets).")
    sa_list.add_argument("--project", type=int, default=None, help="Only accounts with access to it.")
    sa_revoke = _command(account_commands, "revoke", "Revoke a service account at once.")
    sa_revoke.add_argument("--username", required=True)

    retention_cmd = commands.add_parser("retention", help="Apply project retention.")
    retention_commands = retention_cmd.add_subparsers(dest="subcommand", required=True)
    apply = _command(retention_commands, "apply", "Drop every project's events older than its retention now.")
    apply.add_argument("--project", type=int, default=None, help="Only this project.")

    backup_cmd = _command(commands, "backup", "Write a consistent snapshot of the store and registry.")
    backup_cmd.add_argument("--out", required=True, help="New (or empty) directory for the backup.")
    restore = _command(commands, "restore", "Rebuild an empty data directory from a backup.")
    restore.add_argument("--from", dest="source", required=True, help="A directory written by backup.")

    export = commands.add_parser("export", help="Export a running server's events, one gzip JSONL per day.")
    download.add_arguments(export)
    return parser


# -- handlers: each gets the parsed args and the resolved config, and returns what to print ------

Handler = Callable[[argparse.Namespace, Config], object]


def _registry(config: Config) -> Registry:
    return Registry(config.data_dir)


def _project_create(args: argparse.Namespace, config: Config) -> object:
    project = _registry(config).create_project(
        args.name, args.timezone, legacy_signature=args.legacy_signature
    )
    return project.public_dict()


def _project_list(args: argparse.Namespace, config: Config) -> object:
    return [p.listing_dict(show_secrets=args.show_secrets) for p in _registry(config).list_projects()]


def _project_rotate(args: argparse.Namespace, config: Config) -> object:
    return _registry(config).rotate_secret(args.project, legacy_signature=args.legacy_signature).public_dict()


def _project_delete(args: argparse.Namespace, config: Config) -> object:
    registry = _registry(config)
    project = registry.delete_project(args.project)  # credentials stop working now
    result = _run(registry, config, tasks.PURGE_PROJECT, project.project_id, {})
    return {"project_id": project.project_id, "name": project.name, "deleted": result}


def _project_set_retention(args: argparse.Namespace, config: Config) -> object:
    return _registry(config).set_retention(args.project, args.days).listing_dict(show_secrets=False)


def _account_create(args: argparse.Namespace, config: Config) -> object:
    account = _registry(config).create_service_account(args.project, args.name, expires_days=args.expires)
    return {**account.public_dict(), "secret": account.secret}


def _account_list(args: argparse.Namespace, config: Config) -> object:
    return [a.public_dict() for a in _registry(config).list_service_accounts(args.project)]


def _account_revoke(args: argparse.Namespace, config: Config) -> object:
    return _registry(config).revoke_service_account(args.username).public_dict()


def _retention_apply(args: argparse.Namespace, config: Config) -> object:
    registry = _registry(config)
    if args.project is not None:
        registry.require_project(args.project)
    return _run(registry, config, tasks.RETENTION, args.project, {})


def _backup(args: argparse.Namespace, config: Config) -> object:
    out = Path(args.out).resolve()
    return {"out": str(out), **_run(_registry(config), config, tasks.BACKUP, None, {"out": str(out)})}


def _restore(args: argparse.Namespace, config: Config) -> object:
    return backup.restore_backup(Path(args.source).resolve(), Path(config.data_dir))


def _run(
    registry: Registry, config: Config, kind: str, project_id: int | None, payload: dict[str, Any]
) -> Any:
    """Create a task, get it done (by the running server or here), return its JSON result."""
    task = registry.create_task(kind, project_id, payload, requested_by="cli")

    def open_store() -> EventStore:
        from rawevents.storage.duckdb_store import DuckDBStore

        return DuckDBStore(config.data_dir, memory_limit=config.engine_memory_limit, commit_interval_ms=0)

    done = handoff.run_task(
        registry,
        Path(config.data_dir),
        task,
        open_store,
        on_wait=lambda message: print(f"rawevents: {message}", file=sys.stderr, flush=True),
    )
    if done.status != SUCCESS:
        raise RawEventsError(f"{kind} {done.status.lower()}: {done.result}")
    return json.loads(done.result)


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("project", "create"): _project_create,
    ("project", "list"): _project_list,
    ("project", "rotate-secret"): _project_rotate,
    ("project", "delete"): _project_delete,
    ("project", "set-retention"): _project_set_retention,
    ("service-account", "create"): _account_create,
    ("service-account", "list"): _account_list,
    ("service-account", "revoke"): _account_revoke,
    ("retention", "apply"): _retention_apply,
    ("backup", None): _backup,
    ("restore", None): _restore,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":  # a client of a running server: no data directory involved
            download.run(args, sys.stdout)
            return 0
        config = load_config(data_dir=args.data_dir)
        if args.command == "serve":
            from rawevents.server import serve

            serve(config.with_overrides(host=args.host, port=args.port, demo=args.demo))
            return 0
        _print(HANDLERS[(args.command, getattr(args, "subcommand", None))](args, config))
    except RawEventsError as exc:
        print(f"rawevents: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _print(payload: object) -> None:
    print(json.dumps(payload))


if __name__ == "__main__":
    sys.exit(main())
