from __future__ import annotations

from pathlib import Path

from rawevents.cli import build_parser
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


def test_cli_parses_the_public_commands() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--port", "1234"]).port == "1234"
    args = parser.parse_args(["project", "create", "--name", "n", "--timezone", "Europe/Berlin"])
    assert (args.name, args.timezone) == ("n", "Europe/Berlin")
    assert parser.parse_args(["service-account", "create", "--project", "3"]).project == 3
