"""docs/configuration.md and .env.example are generated from wa_core/settings.py
(``wa-dev config-docs``): they must be current, and every setting must say what it does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wa_core.settings import Settings
from wa_dev import config_docs
from wa_dev.config_docs import REQUIRED, render_configuration, render_env_example, setting_rows


def test_every_setting_has_a_description() -> None:
    missing = [row["name"] for row in setting_rows() if not row["description"]]
    assert not missing, f"add description=… to these fields of wa_core/settings.py: {missing}"


def test_configuration_md_and_env_example_are_current() -> None:
    assert config_docs.outdated() == [], "run `wa-dev config-docs` (python -m wa_dev.config_docs) and commit the result"


def test_every_setting_is_in_the_table_and_the_env_example() -> None:
    """Each field appears once in the generated table and once in .env.example, by its env name."""
    table = config_docs.CONFIGURATION_MD.read_text(encoding="utf-8")
    env = config_docs.ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for row in setting_rows():
        assert table.count(f"| `{row['name']}` |") == 1, row["name"]
        lines = [line for line in env if line.lstrip("# ").split("=", 1)[0] == row["name"] and "=" in line]
        assert len(lines) == 1, row["name"]
        if row["name"] in REQUIRED:
            assert lines[0] == f"{row['name']}={REQUIRED[row['name']]}"  # required: uncommented placeholder
        else:
            assert lines[0] == f"# {row['name']}={row['default']}"  # optional: commented, with its default


def test_required_names_are_settings_and_the_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """REQUIRED names real settings, and .env.example as a .env file is accepted by Settings
    (placeholders included) with its required values read from it."""
    names = {row["name"] for row in setting_rows()}
    assert set(REQUIRED) <= names
    for name in names:  # the environment would win over the file
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=str(config_docs.ENV_EXAMPLE))
    assert settings.database_url == REQUIRED["DATABASE_URL"]
    assert settings.meta_app_secret.get_secret_value() == REQUIRED["META_APP_SECRET"]


def test_a_changed_description_makes_the_files_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is not vacuous: a setting whose description changed, or a missing block, is caught."""
    rows = setting_rows()
    current = config_docs.CONFIGURATION_MD.read_text(encoding="utf-8")
    changed = [dict(row) for row in rows]
    changed[0]["description"] = "something else entirely"
    assert render_configuration(current, changed) != current
    assert render_env_example(changed) != config_docs.ENV_EXAMPLE.read_text(encoding="utf-8")
    stale_md, stale_env = tmp_path / "configuration.md", tmp_path / ".env.example"
    stale_md.write_text(render_configuration(current, changed), encoding="utf-8")
    stale_env.write_text(render_env_example(rows), encoding="utf-8")
    monkeypatch.setattr(config_docs, "ROOT", tmp_path)
    assert config_docs.outdated(stale_md, stale_env) == ["configuration.md"]
    with pytest.raises(ValueError, match="markers"):
        render_configuration("no markers here", rows)


def test_types_defaults_and_bounds_come_from_the_fields() -> None:
    by_name = {row["name"]: row for row in setting_rows()}
    assert by_name["PROCESSING_BATCH_SIZE"]["type"] == "int, ≥ 1, ≤ 5000"
    assert by_name["PROCESSING_BATCH_SIZE"]["default"] == "1000"
    assert by_name["WA_DATA_DIR"]["default"] == "var"  # the alias is the variable
    assert by_name["META_APP_SECRET"] == {**by_name["META_APP_SECRET"], "type": "secret", "default": ""}
    assert by_name["LANDING_NOTIFY"]["default"] == "true"
    assert by_name["API_DOCS"]["type"] == "on | admin | off"


def test_deploy_md_names_every_required_setting() -> None:
    """docs/deploy.md's "Required and optional settings" table and REQUIRED (the uncommented
    lines of .env.example) say the same."""
    deploy = (config_docs.ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = deploy.split("## Required and optional settings", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    named = {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0])}
    assert set(REQUIRED) <= named
