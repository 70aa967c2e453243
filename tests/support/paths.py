"""Where things are: computed from this file, so tests find them from any sub-folder."""

from __future__ import annotations

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS_DIR.parent
#: Golden packets and the wire-test dictionary.
DATA_DIR = TESTS_DIR / "data"
#: The FreeRADIUS configuration template (deploy/freeradius/README.md).
TEMPLATE_DIR = REPO_ROOT / "deploy" / "freeradius"
