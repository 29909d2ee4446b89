"""The package layering of DESIGN.md §2: ``decoding`` loads neither pandas nor transformers, and the degeneracy
predicates it shares with ``analysis`` load neither pandas nor torch."""

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("module", "absent"), [
    ("decoding", ("pandas", "transformers")),
    ("analysis.predicates", ("pandas", "torch")),
])
def test_import_does_not_load(module, absent):
    check = f"import {module}, sys; loaded = [m for m in {absent!r} if m in sys.modules]; assert not loaded, loaded"
    run = subprocess.run([sys.executable, "-c", check], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
