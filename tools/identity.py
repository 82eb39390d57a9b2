#!/usr/bin/env python3
"""Capture what a restructure must not change, so two trees can be compared side by side.

    python tools/identity.py OUT_DIR [--shared ../shared] [--clip CLIP.mp4]
    diff -r BEFORE_DIR AFTER_DIR          # run once per tree (check out the other tree, run again)

Writes into OUT_DIR: every command's ``--help`` (fixed width), the INT8 model ``quantize`` makes from the
embedded model (its sha256), ``val`` of the float and INT8 models on coco128-seg (metrics rounded to 4
decimals), ``predict --save-json`` of both models on the coco128 images, and ``predict --save-jsonl`` of a
clip (plain, and with ``--track`` and a counting line). Timings and paths are left out; everything written is
expected to be byte-identical between two trees that only moved code. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edgeseg.cli"]
COMMANDS = ["", "export", "predict", "demo", "val", "bench", "report", "quantize", "horizon"]
EMBEDDED = REPO / "src" / "edgeseg" / "assets" / "yolov8n-seg-coco128-640.onnx"


def run(args: list[str], out: Path | None = None) -> str:
    env = dict(os.environ, COLUMNS="100", PYTHONHASHSEED="0")
    done = subprocess.run(CLI + args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"edgeseg {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if out is not None:
        out.write_text(done.stdout)
    return done.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {
            key: Path(item).name if key in ("model", "data") else rounded(item)
            for key, item in value.items()
            if "time" not in key and "path" not in key
        }
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def make_clip(images: Path, clip: Path, frames: int = 24) -> None:
    """A deterministic 640x480 clip of the first coco128 images, each held for two frames."""
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
    for path in sorted(images.glob("*.jpg"))[: frames // 2]:
        frame = cv2.resize(cv2.imread(str(path)), (640, 480))
        writer.write(frame)
        writer.write(frame)
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared")))
    parser.add_argument("--clip", type=Path, help="reuse this clip (default: made from coco128 into OUT)")
    args = parser.parse_args()
    out: Path = args.out
    (out / "help").mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    data = args.shared / "datasets" / "coco128-seg.yaml"
    images = args.shared / "datasets" / "coco128-seg" / "images" / "train2017"
    manifest: dict[str, str] = {}

    for command in COMMANDS:
        run([command, "--help"] if command else ["--help"], out / "help" / f"{command or 'edgeseg'}.txt")

    int8 = work / "int8.onnx"
    run(["quantize", str(EMBEDDED), "--calib", str(images), "--num", "16", "--report-images", "0", "--bench", "0", "-o", str(int8)])
    manifest["quantize int8.onnx"] = sha256(int8)

    run(["val", str(EMBEDDED), str(int8), "--data", str(data), "--save-json", str(work / "val.json")])
    (out / "val.json").write_text(json.dumps(rounded(json.loads((work / "val.json").read_text())), indent=1))

    for name, model in (("float", EMBEDDED), ("int8", int8)):
        target = out / f"predict-{name}.json"
        run(["predict", str(model), str(images), "--save-json", str(target)])
        manifest[f"predict {name} json"] = sha256(target)

    clip = args.clip or work / "clip.mp4"
    if not clip.exists():
        make_clip(images, clip)
    manifest["clip"] = sha256(clip)
    for name, extra in (("plain", ["--workers", "2"]), ("track", ["--track", "--line", "mid=0.5,0,0.5,1"])):
        target = out / f"stream-{name}.jsonl"
        run(["predict", str(EMBEDDED), str(clip), "--save-jsonl", str(target), *extra])
        manifest[f"stream {name} jsonl"] = sha256(target)

    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
