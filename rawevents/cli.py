"""`rawevents` command line: serve, projects, service accounts, retention, backup/restore, export.

Flags default to the settings table (and so to the RAWEVENTS_* environment variables). Commands
that touch stored events hand their work to a running server through the registry, or do it
themselves when none runs (see `rawevents.admin.handoff`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rawevents.admin import commands
from rawevents.errors import RawEventsError
from rawevents.export import download
from rawevents.settings import SETTINGS_BY_NAME, Config, load_config


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help=SETTINGS_BY_NAME["data_dir"].help)


def _command(parent: Any, name: str, help_text: str, *, data_dir: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
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
    top = parser.add_subparsers(dest="command", required=True)

    serve = _command(top, "serve", "Run the HTTP server.")
    serve.add_argument("--host", default=None, help=SETTINGS_BY_NAME["host"].help)
    serve.add_argument("--port", type=int, default=None, help=SETTINGS_BY_NAME["port"].help)
    serve.add_argument("--demo", action="store_true", default=None, help=SETTINGS_BY_NAME["demo"].help)

    project = top.add_parser("project", help="Manage projects.")
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

    account = top.add_parser("service-account", help="Manage service accounts.")
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

    retention_cmd = top.add_parser("retention", help="Apply project retention.")
    retention_commands = retention_cmd.add_subparsers(dest="subcommand", required=True)
    apply = _command(retention_commands, "apply", "Drop every project's events older than its retention now.")
    apply.add_argument("--project", type=int, default=None, help="Only this project.")

    backup_cmd = _command(top, "backup", "Write a consistent snapshot of the store and registry.")
    backup_cmd.add_argument("--out", required=True, help="New (or empty) directory for the backup.")
    restore = _command(top, "restore", "Rebuild an empty data directory from a backup.")
    restore.add_argument("--from", dest="source", required=True, help="A directory written by backup.")

    export = top.add_parser("export", help="Export a running server's events, one gzip JSONL per day.")
    download.add_arguments(export)
    return parser


# -- each command's arguments handed to its function in rawevents.admin.commands -------------

Handler = Callable[[argparse.Namespace, Config], object]

HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("project", "create"): lambda a, c: commands.project_create(c, a.name, a.timezone, a.legacy_signature),
    ("project", "list"): lambda a, c: commands.project_list(c, a.show_secrets),
    ("project", "rotate-secret"): lambda a, c: commands.project_rotate_secret(
        c, a.project, a.legacy_signature
    ),
    ("project", "delete"): lambda a, c: commands.project_delete(c, a.project),
    ("project", "set-retention"): lambda a, c: commands.project_set_retention(c, a.project, a.days),
    ("service-account", "create"): lambda a, c: commands.service_account_create(
        c, a.project, a.name, a.expires
    ),
    ("service-account", "list"): lambda a, c: commands.service_account_list(c, a.project),
    ("service-account", "revoke"): lambda a, c: commands.service_account_revoke(c, a.username),
    ("retention", "apply"): lambda a, c: commands.retention_apply(c, a.project),
    ("backup", None): lambda a, c: commands.backup_write(c, a.out),
    ("restore", None): lambda a, c: commands.backup_restore(c, a.source),
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
