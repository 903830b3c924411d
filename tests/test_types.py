"""The type check is part of the suite: a type error in relaychat/ fails the
README's test command, not only ``.ci/run``.

mypy runs as ``.ci/run`` runs it (``python -m mypy`` in the checkout, with
``pyproject.toml``'s ``[tool.mypy]``), with its cache in the test's own
temporary directory, so every run checks from scratch and leaves nothing
in the checkout. mypy and mypy-zope are in the ``test`` extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[1]


class TypeCheck(SynchronousTestCase):
    def test_relaychat_has_no_type_error(self) -> None:
        cache = os.path.abspath(self.mktemp())
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--cache-dir", cache, "--no-error-summary", "--hide-error-context"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        if "No module named mypy" in result.stderr:
            self.fail('mypy is not installed: pip install ".[test]" installs it (and mypy-zope)')
        self.assertEqual(result.returncode, 0, f"python -m mypy:\n{result.stdout}{result.stderr}")
        self.assertEqual(result.stdout.strip(), "", result.stdout)
