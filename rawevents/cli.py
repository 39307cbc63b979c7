"""`rawevents` command line: serve, project create/list, service-account create.

Flags default to the settings table (and so to the RAWEVENTS_* environment variables).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rawevents.errors import RawEventsError
from rawevents.export import download
from rawevents.projects import Registry
from rawevents.settings import SETTINGS_BY_NAME, Config, load_config, redact_store


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)
    parser.add_argument("--store", default=None, help=SETTINGS_BY_NAME["store"].help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawevents", description="Self-hosted Mixpanel-compatible event store."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Run the HTTP server.")
    _data_dir_arg(serve)
    serve.add_argument("--host", default=None, help=SETTINGS_BY_NAME["host"].help)
    serve.add_argument("--port", type=int, default=None, help=SETTINGS_BY_NAME["port"].help)
    serve.add_argument("--demo", action="store_true", default=None, help=SETTINGS_BY_NAME["demo"].help)
    serve.add_argument("--workers", type=int, default=None, help=SETTINGS_BY_NAME["workers"].help)

    migrate = commands.add_parser(
        "migrate", help="Copy the embedded DuckDB store's events and profiles into another store."
    )
    migrate.add_argument("--from", dest="source", choices=["duckdb"], required=True)
    migrate.add_argument("--to", dest="target", required=True, help="chdb, or a clickhouse:// URL")
    migrate.add_argument("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)

    project = commands.add_parser("project", help="Manage projects.")
    project_commands = project.add_subparsers(dest="project_command", required=True)
    create = project_commands.add_parser("create", help="Create a project and print its credentials as JSON.")
    create.add_argument("--name", required=True)
    create.add_argument("--timezone", default="UTC", help="IANA time zone of the project (default UTC).")
    _data_dir_arg(create)
    listing = project_commands.add_parser("list", help="Print every project as a JSON array.")
    _data_dir_arg(listing)

    account = commands.add_parser("service-account", help="Manage service accounts.")
    account_commands = account.add_subparsers(dest="account_command", required=True)
    sa_create = account_commands.add_parser(
        "create", help="Create a service account with access to a project."
    )
    sa_create.add_argument("--project", type=int, required=True)
    sa_create.add_argument("--name", default="service-account")
    _data_dir_arg(sa_create)

    export = commands.add_parser("export", help="Export a running server's events, one gzip JSONL per day.")
    download.add_arguments(export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":  # a client of a running server: no data directory involved
        try:
            download.run(args, sys.stdout)
        except RawEventsError as exc:
            print(f"rawevents: {exc.message}", file=sys.stderr)
            return 2
        return 0
    config = load_config(data_dir=args.data_dir, store=getattr(args, "store", None))
    try:
        if args.command == "serve":
            from rawevents.server import serve

            serve(config.with_overrides(host=args.host, port=args.port, demo=args.demo, workers=args.workers))
            return 0
        if args.command == "migrate":
            _migrate(config.with_overrides(store=args.target))
            return 0
        registry = Registry(config.data_dir)
        if args.command == "project" and args.project_command == "create":
            _print(registry.create_project(args.name, args.timezone).public_dict())
        elif args.command == "project" and args.project_command == "list":
            _print([p.public_dict() for p in registry.list_projects()])
        elif args.command == "service-account":
            account = registry.create_service_account(args.project, args.name)
            _print(
                {"username": account.username, "secret": account.secret, "projects": list(account.projects)}
            )
    except RawEventsError as exc:
        print(f"rawevents: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _migrate(target: Config) -> None:
    from rawevents.storage import open_store
    from rawevents.storage.migrate import migrate_duckdb

    store = open_store(target)
    try:
        moved = migrate_duckdb(target.data_dir, store, lambda n: print(f"{n} events", file=sys.stderr))
    finally:
        store.close()
    _print({"events": moved.events, "profiles": moved.profiles, "to": redact_store(target.store)})


def _print(payload: object) -> None:
    print(json.dumps(payload))


if __name__ == "__main__":
    sys.exit(main())
