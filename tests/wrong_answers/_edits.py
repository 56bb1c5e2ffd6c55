"""The one helper the wrong-answer banks share: derive a mistake from correct code by small edits.

Not a bank (``course check`` loads ``<assignment>.py`` only). A bank loads it by path, since banks are
loaded from their file and not as a package::

    import runpy
    from pathlib import Path

    edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]
"""
from __future__ import annotations


def edit(text: str, *changes: str) -> str:
    """``text`` with each ``old`` replaced by ``new`` (every occurrence), in the order given.

    ``changes`` alternates ``old, new, old, new, ...``. Every ``old`` must occur in the text as edited so far:
    when the correct code changes and an edit no longer applies, the bank fails to load with the edit named,
    instead of silently offering the correct code (or another mistake) as the intended one.
    """
    if not changes or len(changes) % 2:
        raise TypeError(f"edit(text, old, new, ...) takes pairs of old and new texts, got {len(changes)} texts")
    for old, new in zip(changes[::2], changes[1::2]):
        if old not in text:
            raise ValueError(f"wrong-answer bank: the text to replace, {old!r}, is not in the code it edits:\n"
                             f"{text}\nFix: update the edit to match the correct code it derives from.")
        text = text.replace(old, new)
    return text
