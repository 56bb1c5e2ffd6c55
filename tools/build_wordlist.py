"""Rebuild ``course_lib/data/words.txt``, the curated word list of the embedded corpus.

Maintainer script, not part of the package. Source: Debian's ``wamerican`` list
(``/usr/share/dict/american-english``). Kept: lowercase ASCII words of 3-7 letters that are neither
on ``better_profanity``'s word list nor contain one of its entries of four letters or more.
Then 3,000 words are drawn with a fixed seed; the first 2,700 are for pretraining, the last 300
are held out (never seen in pretraining) and used by every evaluation.

    apt-get install wamerican && pip install better_profanity && python tools/build_wordlist.py
"""
import random
import re
from importlib.resources import files
from pathlib import Path

SOURCE = Path("/usr/share/dict/american-english")
OUT = Path(__file__).resolve().parents[1] / "course_lib" / "data" / "words.txt"
N_WORDS, N_HELDOUT = 3000, 300


def main() -> None:
    blocked = {w.strip().lower() for w in
               files("better_profanity").joinpath("profanity_wordlist.txt").read_text().splitlines() if w.strip()}
    long_blocked = [b for b in blocked if len(b) >= 4 and b.isalpha()]
    words = sorted({w for w in SOURCE.read_text().split() if re.fullmatch(r"[a-z]{3,7}", w)})
    words = [w for w in words if w not in blocked and not any(b in w for b in long_blocked)]
    rng = random.Random(1234)
    rng.shuffle(words)
    chosen = words[:N_WORDS]
    header = ("# Curated word list for the embedded corpus (built by tools/build_wordlist.py).\n"
              f"# {N_WORDS - N_HELDOUT} training words, then a line '# heldout', then {N_HELDOUT} held-out words.\n")
    OUT.write_text(header + "\n".join(chosen[:-N_HELDOUT]) + "\n# heldout\n" + "\n".join(chosen[-N_HELDOUT:]) + "\n")
    print(f"wrote {OUT} ({len(chosen)} words from {len(words)} candidates)")


if __name__ == "__main__":
    main()
