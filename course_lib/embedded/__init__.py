"""The embedded model family: small pretrained causal LMs that ship inside the package.

They are char-level Llama-architecture models pretrained by :mod:`course_lib.embedded.train` on
the synthetic corpus of :mod:`course_lib.embedded.corpus`. Each member lives in
``course_lib/embedded/models/<size>/`` (safetensors, config, generation config, tokenizer,
``MODEL_CARD.md``, ``training.json``) and loads with ``from_pretrained(<that directory>)``.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

MEMBERS = ("xs", "s", "m", "l")
DEFAULT_MEMBER = "m"


def member_dir(size: str = DEFAULT_MEMBER) -> Path:
    """The shipped directory of one member (``"xs"``, ``"s"``, ``"m"``, ``"l"``)."""
    from ..errors import ModelNotFoundError, UnknownModelError

    if size not in MEMBERS:
        raise UnknownModelError(f"the embedded family has no member 'embedded-{size}'.",
                                f"use one of {', '.join('embedded-' + m for m in available_members())} "
                                f"(shipped), or 'embedded' for the default, embedded-{DEFAULT_MEMBER}.")
    path = Path(str(files("course_lib.embedded").joinpath("models", size)))
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"the embedded model 'embedded-{size}' is not shipped in {path}.",
                                 f"train it: python -m course_lib.embedded.train --size {size} --out {path}")
    return path


def available_members() -> list[str]:
    root = Path(str(files("course_lib.embedded").joinpath("models")))
    return [m for m in MEMBERS if (root / m / "config.json").is_file()]
