"""scripts/setup.sh names a missing prerequisite instead of failing halfway through an install."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only the named tools (so the others are 'not installed')."""
    for tool in tools:
        (tmp_path / tool).symlink_to(shutil.which(tool))
    return str(tmp_path)


def test_missing_java_is_named(tmp_path):
    env = {"PATH": _path_with(tmp_path, "dirname", "awk", "cut"), "PYTHON": sys.executable, "HOME": str(tmp_path),
           "LAKEREC_VENV": str(tmp_path / "venv")}
    out = subprocess.run(["/bin/bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert "Java not found" in out.stderr and "openjdk-17" in out.stderr
    assert not (tmp_path / "venv").exists()  # stopped before creating anything


def test_wrong_python_is_named(tmp_path):
    fake = tmp_path / "python9"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "LAKEREC_VENV": str(tmp_path / "venv")}
    out = subprocess.run(["/bin/bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "Python 3.10-3.12" in out.stderr
