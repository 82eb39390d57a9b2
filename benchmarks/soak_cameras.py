#!/usr/bin/env python3
"""Soak: ``edgeseg run`` on four real RTSP cameras for half an hour, one camera dropped every two minutes; the
process's memory, threads and open files sampled all along, and plotted.

    python benchmarks/soak_cameras.py                               # 30 min, 4 cameras at 10 fps, a drop every 120 s for 20 s
    python benchmarks/soak_cameras.py --minutes 5 --drop-every 60   # a short look

The cameras are GStreamer RTSP servers on loopback (``benchmarks/rtsp_server.py``) serving coco128-seg pictures
(640x480). The run is the command a user starts: ``edgeseg run DEPLOY.yaml`` in its own process (the embedded model,
``--workers 2``, every camera tracked with a counting line, its JSON Lines rotated every ``--rotate-minutes``, the
live view with /health and /metrics on a free port). Every ``--sample-s`` the process's resident memory, threads
and open files are read (psutil) with /health's camera states; every ``--drop-every`` seconds the next camera's
server is killed and started again ``--down`` seconds later. At the end the run gets SIGTERM: it must exit 130
with every JSON Lines line whole. Growth is counted from ``--warmup-minutes`` on (allocator and ONNX Runtime
arenas warm up first). Files go to ``runs/soak`` (git-ignored); ``--plot`` writes the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edgeseg.fileio import write_json_atomic  # noqa: E402
from edgeseg.predict import DEFAULT_MODEL  # noqa: E402
from edgeseg.sources import images_in  # noqa: E402
from rtsp_server import RtspCamera, free_port, write_frames  # noqa: E402

SHARED = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "datasets" / "coco128-seg" / "images" / "train2017"
OUT = REPO / "runs" / "soak"


def deployment(cameras: list[RtspCamera], out: Path, *, port: int, rotate_minutes: float, workers: int) -> dict:
    return {
        "model": {"path": str(DEFAULT_MODEL)},
        "run": {"workers": workers},
        "cameras": {
            f"cam{k}": {
                "source": camera.url,
                "track": True,
                "lines": {"door": "0.5,0,0.5,1"},
                "outputs": {"save_jsonl": str(out / f"cam{k}.jsonl"), "rotate": {"max_minutes": rotate_minutes}},
            }
            for k, camera in enumerate(cameras)
        },
        "serve": {"address": f"127.0.0.1:{port}"},
    }


def sample(proc: psutil.Process, port: int, t0: float) -> dict:
    row = {"t_s": round(time.monotonic() - t0, 1)}
    try:
        with proc.oneshot():
            row.update(rss_mb=proc.memory_info().rss / 1e6, threads=proc.num_threads(), fds=proc.num_fds())
    except psutil.Error as exc:
        row["error"] = str(exc)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            health = json.loads(r.read())
        row["cameras"] = {c["name"]: (c["state"], c["frames"], c["reconnects"]) for c in health.get("cameras", [])}
    except OSError as exc:
        row["health_error"] = str(exc)
    return row


def soak(args: argparse.Namespace) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=OUT))
    pictures = write_frames(images_in(IMAGES)[:16], work / "pictures")
    cameras = [RtspCamera(pictures, fps=args.fps).start() for _ in range(args.cameras)]
    port = free_port()
    spec = work / "deploy.yaml"
    spec.write_text(yaml.safe_dump(deployment(cameras, work, port=port, rotate_minutes=args.rotate_minutes, workers=args.workers)))
    log = open(work / "run.log", "wb")  # noqa: SIM115 (the run's stderr, closed below)
    run = subprocess.Popen([sys.executable, "-m", "edgeseg.cli", "run", str(spec)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    proc = psutil.Process(run.pid)
    t0, rows, drops = time.monotonic(), [], []
    next_drop, down, k = args.drop_every, None, 0
    try:
        while (elapsed := time.monotonic() - t0) < args.minutes * 60:
            if run.poll() is not None:
                raise SystemExit(f"soak: the run exited early ({run.returncode}); see {work / 'run.log'}")
            if down is None and elapsed >= next_drop:
                down = (cameras[k % len(cameras)], elapsed)
                down[0].stop()
                drops.append({"camera": f"cam{k % len(cameras)}", "down_s": round(elapsed, 1)})
                k += 1
            elif down is not None and elapsed >= down[1] + args.down:
                down[0].start()
                drops[-1]["up_s"] = round(elapsed, 1)
                down, next_drop = None, next_drop + args.drop_every
            rows.append(sample(proc, port, t0))
            print(json.dumps(rows[-1]), flush=True)
            time.sleep(args.sample_s)
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            code = run.wait(120)
        except subprocess.TimeoutExpired:
            run.kill()
            code = "killed"
        log.close()
        for camera in cameras:
            camera.close()
    lines = bad = 0
    for path in sorted(work.glob("cam*.jsonl")):
        for line in path.read_text().splitlines():
            lines += 1
            try:
                json.loads(line)
            except ValueError:
                bad += 1
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"rows": rows, "drops": drops, "exit": code, "jsonl_lines": lines, "jsonl_bad_lines": bad, "work": str(work), "args": settings}


def growth(result: dict, warmup_s: float) -> dict:
    rows = [r for r in result["rows"] if "rss_mb" in r]
    after = [r for r in rows if r["t_s"] >= warmup_s]
    if not after:
        return {}
    base = after[0]
    return {
        "rss_mb_at_warmup": round(base["rss_mb"], 1),
        "rss_mb_end": round(after[-1]["rss_mb"], 1),
        "rss_growth_mb": round(after[-1]["rss_mb"] - base["rss_mb"], 1),
        "rss_max_growth_mb": round(max(r["rss_mb"] for r in after) - base["rss_mb"], 1),
        "threads": sorted({r["threads"] for r in after}),
        "fds_min_max": [min(r["fds"] for r in after), max(r["fds"] for r in after)],
        "reconnects": {name: v[2] for name, v in rows[-1].get("cameras", {}).items()} if rows else {},
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "rss_mb" in r]
    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True)
    for ax, key, label in zip(axes, ("rss_mb", "threads", "fds"), ("resident memory (MB)", "threads", "open files")):
        ax.plot(t, [r[key] for r in rows], lw=1.2)
        ax.set_ylabel(label)
        for d in result["drops"]:
            ax.axvspan(d["down_s"] / 60, d.get("up_s", d["down_s"]) / 60, color="tab:red", alpha=0.15, lw=0)
        ax.grid(alpha=0.3)
    axes[0].axvline(result["args"]["warmup_minutes"], color="grey", ls="--", lw=1)
    warm = [r["rss_mb"] for r in rows if r["t_s"] >= 60]  # the first minute loads the model: zoom on the rest
    if warm:
        axes[0].set_ylim(min(warm) - 20, max(warm) + 20)
    axes[-1].set_xlabel("minutes (red: a camera's server down)")
    g = growth(result, result["args"]["warmup_minutes"] * 60)
    fig.suptitle(
        f"edgeseg run: {result['args']['cameras']} RTSP cameras, one dropped every {result['args']['drop_every']:g} s; "
        f"RSS growth after {result['args']['warmup_minutes']:g} min: {g.get('rss_growth_mb', float('nan')):+.1f} MB",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drop-every", type=float, default=120)
    parser.add_argument("--down", type=float, default=20)
    parser.add_argument("--sample-s", type=float, default=10)
    parser.add_argument("--warmup-minutes", type=float, default=5)
    parser.add_argument("--rotate-minutes", type=float, default=10)
    parser.add_argument("--plot", type=Path, default=None, help="write the figure here (PNG)")
    args = parser.parse_args()
    result = soak(args)
    result["growth"] = growth(result, args.warmup_minutes * 60)
    write_json_atomic(OUT / "soak.json", result)
    if args.plot:
        plot(result, args.plot)
    print(json.dumps({k: result[k] for k in ("growth", "drops", "exit", "jsonl_lines", "jsonl_bad_lines")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
