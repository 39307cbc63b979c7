from __future__ import annotations

from pathlib import Path

import pytest

from rawevents.cli import build_parser
from rawevents.settings import SETTINGS, Config, SettingError, _toml_text, load_config

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


def test_every_default_passes_its_own_check() -> None:
    for setting in SETTINGS:
        assert setting.parse(_toml_text(setting.default)) == setting.default, setting.name


def test_a_bad_value_names_the_setting_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(
        SettingError, match=r"^setting demo \(RAWEVENTS_DEMO\): expected true/false, got 'yse'$"
    ):
        load_config({"RAWEVENTS_DEMO": "yse"})
    config = tmp_path / "c.toml"
    config.write_text("port = 9000\ndemo = true\n")
    loaded = load_config({"RAWEVENTS_PORT": "9001"}, config_file=config)
    assert (loaded.port, loaded.demo) == (9001, True)
    assert load_config({"RAWEVENTS_CONFIG": str(config)}, flags={"port": "9002"}).port == 9002
    config.write_text("[server]\nport = 9000\n")
    with pytest.raises(SettingError, match="unknown setting 'server'"):
        load_config({}, config_file=config)
