"""`rawevents` command line: serve, project create/list, service-account create.

Flags default to the settings table (and so to the RAWEVENTS_* environment variables).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from rawevents.errors import RawEventsError
from rawevents.export import download
from rawevents.projects import Registry
from rawevents.settings import CONFIG_ENV, PRIVATE_UMASK, SETTINGS, SETTINGS_BY_NAME, Setting, load_config


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)


def _setting_flag(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """`--name-with-dashes VALUE` (text, parsed and checked by the setting); booleans are
    `--name` / `--no-name`."""
    flag = "--" + setting.name.replace("_", "-")
    if isinstance(setting.default, bool):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=setting.help)
    else:
        parser.add_argument(flag, default=None, metavar="VALUE", help=setting.help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawevents", description="Self-hosted Mixpanel-compatible event store."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Run the HTTP server.")
    serve.add_argument(
        "--config", default=None, help=f"TOML file of settings (default: ${CONFIG_ENV}); see README."
    )
    for setting in SETTINGS:
        _setting_flag(serve, setting)

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
    os.umask(PRIVATE_UMASK)  # every file and directory this process creates is its user's only
    if args.command == "export":  # a client of a running server: no data directory involved
        try:
            download.run(args, sys.stdout)
        except RawEventsError as exc:
            print(f"rawevents: {exc.message}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.command == "serve":
            from rawevents.server import serve

            flags = {s.name: getattr(args, s.name) for s in SETTINGS}
            serve(load_config(config_file=args.config, flags=flags))
            return 0
        config = load_config(flags={"data_dir": args.data_dir})
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


def _print(payload: object) -> None:
    print(json.dumps(payload))


if __name__ == "__main__":
    sys.exit(main())
