#!/usr/bin/env python3
"""The README's tracking still: the project's sample image slid right by 32-pixel steps (the memorising test
model keeps seeing what it learnt), run through `edgeseg predict --track` with a counting line and a zone,
and the last annotated frame of the walk saved: ids, trails, the line with its counts, the zone.

    python tools/make_tracking_still.py docs/images/tracking-still.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

from stills import annotated_still

SHIFTS = list(range(-96, 97, 32))  # 7 frames, every object 32 px further right each frame


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/tracking-still.jpg")
    track = ["--track", "--line", "gate=0.4,0.1,0.4,0.9", "--zone", "yard=0.62,0.45,0.98,0.45,0.98,0.95,0.62,0.95"]
    annotated_still(out, shifts=SHIFTS, predict_args=track, frame=len(SHIFTS) - 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
