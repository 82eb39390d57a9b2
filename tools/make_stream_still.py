#!/usr/bin/env python3
"""The README's video still: a clip made from the project's own sample image (slid by multiples of the
model's 32-pixel stride, so the memorising test model still sees what it learnt), run through
`edgeseg predict --save-video`, and one annotated frame saved.

    python tools/make_stream_still.py docs/images/stream-still.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

from stills import annotated_still


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/stream-still.jpg")
    annotated_still(out, shifts=[*range(-96, 97, 32), *range(64, -97, -32)], predict_args=["--workers", "2"], frame=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
