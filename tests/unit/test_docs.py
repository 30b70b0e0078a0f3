"""The documentation: the site builds in strict mode (a broken link or anchor, a page missing from the nav, a
failing generator all fail), every configuration key has a doc, and README.md stays a short first page that
opens with the two commands CI and newcomers run."""
import importlib.util
import os
import subprocess
import sys

from tests.conftest import REPO

README_COMMANDS = [
    "bash scripts/setup.sh && .venv/bin/lakerec run",
    "bash scripts/setup.sh --dev && .venv/bin/python -m pytest -q -p no:cacheprovider",
]


def test_the_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    assert "train.epochs" in page and "lake.root" in page  # the generated configuration reference is there


def test_every_configuration_key_has_a_doc():
    spec = importlib.util.spec_from_file_location("gen_config_reference", REPO / "docs" / "gen_config_reference.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.undocumented() == [], "add a trailing comment in conf/base.yaml or a Field(description=...)"
    keys = [r["key"] for r in gen.keys() if "key" in r]
    assert {"lake.root", "etl.gates.max_quarantine_share", "train.text.enabled", "score.candidates.table"} <= set(keys)


def test_readme_is_short_and_opens_with_the_two_commands():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/"
    start = lines.index("```bash")
    assert lines[start + 1:start + 3] == README_COMMANDS and start < 5
