from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rawevents.cli import cli
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


def test_cli_lists_the_public_commands_and_their_flags() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"]).output
    for command in ("serve", "project", "service-account", "export", "import"):
        assert command in top
    assert "--port" in runner.invoke(cli, ["serve", "--help"]).output
    assert "--timezone" in runner.invoke(cli, ["project", "create", "--help"]).output
    assert "--project" in runner.invoke(cli, ["service-account", "create", "--help"]).output


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
