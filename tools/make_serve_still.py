#!/usr/bin/env python3
"""The README's picture of the live view with several cameras: four "cameras" cycling through coco128 images, each
frame run through the embedded model, fed to the view's hub as the multi-camera engine would (one camera
reconnecting), and the page shot in headless Chromium (Debian's chromium, driven by playwright).

    python tools/make_serve_still.py [docs/images/cameras-page.png] [--images COCO128_IMAGES_DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from edgeseg import Segmenter
from edgeseg.engines.threads import StreamFrame, StreamStats
from edgeseg.predict import DEFAULT_MODEL
from edgeseg.serve import ServeConfig, start_server

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
CAMERAS = ("entrance", "loading-dock", "parking", "corridor")
FRAMES_PER_CAMERA = 1  # one picture per camera: the side panel and the tile show the same frame in the still
SIZE = (640, 480)


def four_by_three(image: np.ndarray) -> np.ndarray:
    """The middle 4:3 of a picture at ``SIZE``: every camera frames alike, nothing stretched."""
    h, w = image.shape[:2]
    cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
    x, y = (w - cw) // 2, (h - ch) // 2
    return cv2.resize(image[y : y + ch, x : x + cw], SIZE)


def camera_frames(images: list[Path], seg: Segmenter) -> dict[str, list[StreamFrame]]:
    """A few frames per camera, each a coco128 picture in which the model finds at least two things, with the
    model's detections and its measured latency."""
    frames: dict[str, list[StreamFrame]] = {name: [] for name in CAMERAS}
    pictures = iter(images)
    for name in CAMERAS:
        while len(frames[name]) < FRAMES_PER_CAMERA:
            image = four_by_three(cv2.imread(str(next(pictures))))
            start = time.perf_counter()
            detections = seg(image)
            latency = (time.perf_counter() - start) * 1000
            if len(detections) >= 2:
                k, source = len(frames[name]), f"rtsp://{name}.local/stream"
                frames[name].append(StreamFrame(k, source, image, detections, latency_ms=latency, age_ms=latency + 12, camera=name))
    return frames


def feed(hub, frames: dict[str, list[StreamFrame]], stop: threading.Event) -> None:
    """Each camera's frames in turn at 5 frames/s; the last camera drops out and is reconnecting."""
    stats = {name: StreamStats(camera=name, state="live") for name in frames}
    stats["corridor"].dropped = 3
    for k in range(10_000):
        for name, cycle in frames.items():
            if name == "parking" and k == 8:
                stats[name].state, stats[name].state_detail, stats[name].reconnects = "reconnecting", "no frame for 5 s", 1
                hub.on_state(stats[name])
            if stats[name].state != "live":
                continue
            stats[name].frames += 1
            stats[name].last_frame_at = time.time()
            hub.on_frame(replace(cycle[k % len(cycle)], index=k, time_s=k / 5), stats[name])
        if stop.wait(0.2):
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "images" / "cameras-page.png")
    parser.add_argument("--images", type=Path, default=SHARED / "datasets" / "coco128-seg" / "images" / "train2017")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs headless Chromium (Debian's chromium package)")
    images = sorted(args.images.glob("*.jpg"))
    if len(images) < 32:
        raise SystemExit(f"{args.images}: expected the coco128 images")
    frames = camera_frames(images, Segmenter(DEFAULT_MODEL))
    stop = threading.Event()
    with start_server(ServeConfig(port=0)) as server:
        feeder = threading.Thread(target=feed, args=(server.hub, frames, stop), daemon=True)
        feeder.start()
        try:
            with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    profile,
                    executable_path=chromium,
                    headless=True,
                    args=["--no-sandbox", "--disable-gpu"],
                    viewport={"width": 1440, "height": 1000},
                )
                page = context.new_page()
                page.goto(server.url, timeout=20_000)
                expect(page.locator(".tile")).to_have_count(len(CAMERAS), timeout=20_000)
                expect(page.locator(".tile", has_text="parking").locator(".badge")).to_have_text("reconnecting", timeout=20_000)
                expect(page.locator("#detections tbody tr").first).to_be_visible(timeout=20_000)
                time.sleep(1.5)  # every tile's picture and frames/s in
                args.out.parent.mkdir(parents=True, exist_ok=True)
                shot = page.screenshot()
                context.close()
        finally:
            stop.set()
            feeder.join(10)
    # 256 colours (Pillow, the eval extra's): a quarter of the full-colour PNG's size, the same to the eye
    Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out}")  # look at it: four tiles, parking reconnecting, the entrance's detections beside
    return 0


if __name__ == "__main__":
    sys.exit(main())
