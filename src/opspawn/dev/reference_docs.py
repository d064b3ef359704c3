"""`make manifests` for the generated references: the AgentTask API and the operator settings.

`python -m opspawn.dev.reference_docs` writes docs/crd-reference.md (crd_doc.py) and
docs/operator-settings.md (settings_doc.py); a test generates them again and compares.
"""

from __future__ import annotations

from pathlib import Path

from opspawn.dev.crd_doc import CRD_REFERENCE, crd_reference
from opspawn.dev.settings_doc import SETTINGS_REFERENCE, operator_settings_reference

ROOT = Path(__file__).resolve().parents[3]


def reference_docs() -> dict[Path, str]:
    """Each generated reference, by path relative to the repository."""
    return {
        CRD_REFERENCE: crd_reference(),
        SETTINGS_REFERENCE: operator_settings_reference(),
    }


def main() -> None:
    for path, text in reference_docs().items():
        (ROOT / path).write_text(text)
        print(path)


if __name__ == "__main__":
    main()
