from __future__ import annotations

from pathlib import Path

import click

from rawevents.cli import cli
from rawevents.settings import SETTINGS, Config, load_config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_in_readme() -> None:
    missing = [s.env for s in SETTINGS if s.env not in README or s.name not in README]
    assert missing == []


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    config = load_config({"RAWEVENTS_PORT": "9001", "RAWEVENTS_DEMO": "true"}, data_dir="/x")
    assert config.port == 9001
    assert config.demo is True
    assert config.data_dir == "/x"
    assert load_config({}).port == Config().port == 8000


def _parsed(*args: str) -> dict[str, object]:
    """The parameters a command line parses to, without running the command."""
    group: click.Command = cli
    words = list(args)
    while isinstance(group, click.Group):
        group = group.commands[words.pop(0)]
    return group.make_context(group.name or "", words).params


def test_cli_parses_the_public_commands() -> None:
    assert _parsed("serve", "--port", "1234")["port"] == 1234
    created = _parsed("project", "create", "--name", "n", "--timezone", "Europe/Berlin")
    assert (created["name"], created["timezone"]) == ("n", "Europe/Berlin")
    assert _parsed("service-account", "create", "--project", "3")["project_id"] == 3
