"""Text for the cells of the generated Markdown references."""

from __future__ import annotations

_PROSE_ESCAPES = str.maketrans({"\\": "\\\\", "*": "\\*", "_": "\\_", "[": "\\[", "<": "&lt;"})


def cell(text: str) -> str:
    """Prose as one table cell, shown as written (no emphasis, links or HTML), except for the
    text's own code spans."""
    parts = " ".join(text.split()).split("`")
    parts[::2] = [part.translate(_PROSE_ESCAPES) for part in parts[::2]]
    return "`".join(parts).replace("|", "\\|")


def code(text: str) -> str:
    """`text` as a code span in a table cell."""
    return "`" + " ".join(text.split()).replace("|", "\\|") + "`"
