"""The package layout's one direction of imports, checked by import-linter (the contracts are in
pyproject.toml: wa_core imports neither FastAPI, Dagster nor the edges; wa_webhook never imports
Dagster; nothing in production imports wa_dev), and the size of modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# test_a_contract_would_catch_a_forbidden_import writes a probe module into wa_core/ for a
# moment: under pytest-xdist the three tests that read the source tree run on one worker, one
# after the other (bin/test uses --dist loadgroup), so none of them ever sees the probe
pytestmark = pytest.mark.xdist_group("source_tree")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wa_core", "wa_webhook", "wa_pipelines", "wa_dev")
#: modules allowed past ~400 lines because they do one thing
#: (the Graph emulator plays Meta; the Graph client is one method per Graph API call)
ONE_THING = {"wa_dev/emulator.py", "wa_core/meta/graph/client.py"}


def test_import_contracts_are_kept() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_a_contract_would_catch_a_forbidden_import(tmp_path: Path) -> None:
    # the contract is not vacuous: a wa_core module importing FastAPI breaks it
    probe = ROOT / "wa_core" / "_layout_probe.py"
    probe.write_text("import fastapi  # noqa: F401\n")
    try:
        linter = Path(sys.executable).parent / "lint-imports"
        out = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        probe.unlink()
    assert out.returncode != 0 and "BROKEN" in out.stdout


def test_no_module_is_over_400_lines_unless_it_does_one_thing() -> None:
    long = {
        str(p.relative_to(ROOT)): sum(1 for _ in p.open())
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
    }
    over = {name: n for name, n in long.items() if n > 450 and name not in ONE_THING}
    assert not over, over
