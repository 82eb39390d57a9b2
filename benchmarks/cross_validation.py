#!/usr/bin/env python3
"""Held-out INT8 accuracy by k-fold cross-validation on coco128-seg, and which quantized part costs it.

    python benchmarks/cross_validation.py            # k = 2 and 4: default vs --float-stem, attribution on k = 2
    python benchmarks/cross_validation.py --quick    # k = 2 on 16 images, no attribution: a smoke run

Folds interleave the sorted images (image j is in fold j mod k). For each fold the model is calibrated
on the other folds' images (the first ``--num``) and evaluated float vs INT8 on the fold's own, with
``edgeseg.evaluate`` (box and mask mAP50-95, COCO evaluator). Every setting of a fold comes from the same
calibration (``quantize_variants``). Reported per setting: retention per fold, their mean and spread,
the retention of the pooled held-out predictions (every image predicted by the model that did not see
it, all scored at once), and how close INT8 stays to float on the held-out images: detections matched
(same class, box IoU >= 0.5, conf 0.25), mask IoU of the matched pairs, cosines of protos and mc. The
attribution puts one group of layers back in float at a time on top of the all-INT8 model, and measures
INT8 1-thread latency of every setting side by side (interleaved, medians).

The shared checkpoint was trained on these very images: float mAP is that of a model that memorised
them, so retention measures how far INT8 moves a model away from answers it learned by heart, which
punishes any perturbation. Per-fold mAP on 32-64 images also swings by whole points between settings
that differ by noise; the pooled figure and the closeness columns move much less. Nothing here asserts.
Writes ``runs/cross_validation/cv.json`` and ``cv.md`` (the tables of docs/quantize.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from edgeseg.backends import read_model_info
from edgeseg.evaluate import ValConfig, evaluate, load_dataset, score_predictions
from edgeseg.predict import DEFAULT_MODEL, Segmenter
from edgeseg.preprocess import load_image, preprocess
from edgeseg.quantize import QuantizeConfig, session_latency_ms
from edgeseg.quantize.similarity import compare_outputs
from quantize_variants import quantize_variants

REPO = Path(__file__).resolve().parents[1]
CLOSE_CONF = 0.25  # closeness is measured on what predict shows, not on val's conf 0.001 tail
CLOSE_IMAGES = 32  # per fold
COSINE_IMAGES = 8  # per fold

# Layer groups of YOLOv8-seg (Ultralytics' layer indices; model.22 is the Segment head), put back in float
# one at a time on top of the all-INT8 model: key (a file name) -> (label, node-name prefixes).
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stem": ("stem: first conv + SiLU (= --float-stem)", ("/model.0/",)),
    "stem2": ("first two convs", ("/model.0/", "/model.1/")),
    "backbone": ("backbone after the stem (model.2-9)", tuple(f"/model.{i}/" for i in range(2, 10))),
    "neck_p3": ("neck to P3 (model.10-15)", tuple(f"/model.{i}/" for i in range(10, 16))),
    "neck_p4p5": ("neck P4, P5 (model.16-21)", tuple(f"/model.{i}/" for i in range(16, 22))),
    "protos": ("protos branch", ("/model.22/proto/",)),
    "mc8": ("mc head, stride 8", ("/model.22/cv4.0/",)),
    "mc16": ("mc head, stride 16", ("/model.22/cv4.1/",)),
    "mc32": ("mc head, stride 32", ("/model.22/cv4.2/",)),
    "box": ("box heads", ("/model.22/cv2.",)),
    "cls": ("cls heads", ("/model.22/cv3.",)),
    "all": ("everything (only the head outputs integer)", ("/",)),
}
LABELS = {k: v[0] for k, v in GROUPS.items()}
LABELS.update(
    {
        "default": "default: every layer INT8",
        "float_stem": "--float-stem: first conv + SiLU float",
        "weights8": "8-bit weights (--no-reduce-range)",
    }
)


def node_names(model: Path) -> list[str]:
    """Node names of the graph the quantizer works on (the proto upsample rewritten as a Conv)."""
    from edgeseg.onnxgraph import load_model
    from edgeseg.quantize.quantizer import quantizable_graph

    model13, _ = quantizable_graph(load_model(model), model, QuantizeConfig())
    return [n.name for n in model13.graph.node]


def settings(model: Path, num: int, attribution: bool) -> dict[str, QuantizeConfig]:
    """The settings compared: the default and ``--float-stem``; with ``attribution`` also one per layer group
    put back in float, and 8-bit weights."""
    configs = {"default": QuantizeConfig(num=num), "float_stem": QuantizeConfig(num=num, float_stem=True)}
    if not attribution:
        return configs
    names = node_names(model)
    for key, (_, prefixes) in GROUPS.items():
        if key != "stem":  # that group is --float-stem
            configs[key] = QuantizeConfig(num=num, keep_float=[n for n in names if n.startswith(prefixes)])
    configs["weights8"] = QuantizeConfig(num=num, reduce_range=False)
    return configs


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def closeness(reference: list, model: Path, images: list[np.ndarray]) -> dict[str, float]:
    """INT8 vs float detections on the same images: share matched (greedy by float score, same class, box
    IoU >= 0.5; of the larger count) and the mask IoU of matched pairs (mean and 10th percentile)."""
    seg = Segmenter(model, conf=CLOSE_CONF)
    total, ious = 0, []
    for ref, image in zip(reference, images):
        q = seg(image)
        total += max(len(ref), len(q))
        if not len(ref) or not len(q):
            continue
        iou = _box_iou(ref.xyxy, q.xyxy) * (ref.class_ids[:, None] == q.class_ids[None, :])
        used: set[int] = set()
        for i in np.argsort(-ref.scores):
            j = int(np.argmax(iou[i]))
            if iou[i, j] >= 0.5 and j not in used:
                used.add(j)
                a, b = ref.full_mask(int(i)), q.full_mask(j)
                union = np.logical_or(a, b).sum()
                ious.append(np.logical_and(a, b).sum() / union if union else 1.0)
    return {
        "matched": len(ious) / total if total else 1.0,
        "mask_iou": float(np.mean(ious)) if ious else 0.0,
        "mask_iou_p10": float(np.percentile(ious, 10)) if ious else 0.0,
    }


def run_fold(k: int, fold: int, args, dataset, configs: dict[str, QuantizeConfig]) -> dict:
    """Calibrate on the other folds, evaluate float and every setting on this fold."""
    images = dataset.images
    held = [x for j, x in enumerate(images) if j % k == fold]
    calib = [p for j, (_, p) in enumerate(images) if j % k != fold]
    work = args.work / f"k{k}" / f"fold{fold}"
    calib_dir = work / "calibration"
    calib_dir.mkdir(parents=True, exist_ok=True)
    for p in calib:  # the calibration part as a directory of links, as `edgeseg quantize --calib` takes it
        link = calib_dir / p.name
        if not link.exists():
            os.symlink(p.resolve(), link)
    ds = dataclasses.replace(dataset, images=held, skipped=[], warnings=[])
    print(f"k={k} fold {fold}: calibrate on {min(args.num, len(calib))} of {len(calib)}, evaluate on {len(held)}", flush=True)
    paths = quantize_variants(args.model, calib_dir, configs=configs, out_dir=work / "models", show_progress=sys.stderr.isatty())
    config = ValConfig()
    ref = evaluate(args.model, ds, config=config)
    pics = [load_image(p) for _, p in held[:CLOSE_IMAGES]]
    float_seg = Segmenter(args.model, conf=CLOSE_CONF)
    reference = [float_seg(im) for im in pics]
    info = read_model_info(args.model)
    tensors = [preprocess(im, info.imgsz)[0] for im in pics[:COSINE_IMAGES]]
    rows = {}
    for name, path in paths.items():
        r = evaluate(path, ds, config=config)
        cos = compare_outputs(args.model, path, ["protos", "mc_stride8", "mc_stride16", "mc_stride32"], tensors)
        rows[name] = {
            "box": r.box_map50_95,
            "mask": r.mask_map50_95,
            "box_retention": r.box_map50_95 / ref.box_map50_95,
            "mask_retention": r.mask_map50_95 / ref.mask_map50_95,
            **closeness(reference, path, pics),
            "protos_cosine": cos["protos"].cosine,
            "mc_cosine": min(cos[n].cosine for n in cos if n != "protos"),
            "predictions": r.predictions,
        }
        print(
            f"  {LABELS[name]:45s} box {rows[name]['box_retention']:7.2%}  mask {rows[name]['mask_retention']:7.2%}  "
            f"matched {rows[name]['matched']:.3f}  mask IoU {rows[name]['mask_iou']:.4f}",
            flush=True,
        )
    latency = {}
    if fold == 0 and args.latency_runs > 0:
        latency = session_latency_ms({"float": args.model, **paths}, tensors[0], runs=args.latency_runs)
    return {
        "k": k,
        "fold": fold,
        "float": {"box": ref.box_map50_95, "mask": ref.mask_map50_95, "predictions": ref.predictions},
        "settings": rows,
        "latency_ms": latency,
        "paths": {n: str(p) for n, p in paths.items()},
    }


def summarise(k: int, folds: list[dict], dataset) -> dict:
    """Per setting: retention per fold, mean, spread (min..max, sample sd), pooled retention, closeness means."""
    ids = [i for i, _ in dataset.images]
    float_pool = score_predictions(dataset.coco, [p for f in folds for p in f["float"]["predictions"]], image_ids=ids)
    out = {}
    for name in folds[0]["settings"]:
        rows = [f["settings"][name] for f in folds]
        pool = score_predictions(dataset.coco, [p for r in rows for p in r["predictions"]], image_ids=ids)
        entry = {}
        for key in ("box_retention", "mask_retention"):
            vals = [r[key] for r in rows]
            entry[key] = {
                "folds": vals,
                "mean": statistics.mean(vals),
                "min": min(vals),
                "max": max(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            }
        entry["pooled_box_retention"] = pool.box_map50_95 / float_pool.box_map50_95
        entry["pooled_mask_retention"] = pool.mask_map50_95 / float_pool.mask_map50_95
        for key in ("matched", "mask_iou", "mask_iou_p10", "protos_cosine", "mc_cosine"):
            entry[key] = statistics.mean(r[key] for r in rows)
        entry["latency_ms"] = folds[0]["latency_ms"].get(name)
        out[name] = entry
    return {
        "k": k,
        "folds": len(folds),
        "float_pooled": {"box": float_pool.box_map50_95, "mask": float_pool.mask_map50_95},
        "float_latency_ms": folds[0]["latency_ms"].get("float"),
        "settings": out,
    }


def markdown(summaries: list[dict]) -> str:
    """The tables of docs/quantize.md."""
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    lines = []
    for s in summaries:
        fl = f"; float 1-thread {s['float_latency_ms']:.1f} ms" if s.get("float_latency_ms") else ""
        lines += [
            f"### k = {s['k']} ({s['folds']} folds{fl})",
            "",
            "| setting | mask retention per fold | mean (sd) | pooled | box retention mean / pooled | matched | "
            "mask IoU vs float (p10) | protos / worst mc cosine | INT8 1-thread ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, e in s["settings"].items():
            m, b = e["mask_retention"], e["box_retention"]
            ms = f"{e['latency_ms']:.1f}" if e.get("latency_ms") else "-"
            lines.append(
                f"| {LABELS[name]} | {' / '.join(pct(v) for v in m['folds'])} | {pct(m['mean'])} ({100 * m['sd']:.1f}) | "
                f"{pct(e['pooled_mask_retention'])} | {pct(b['mean'])} / {pct(e['pooled_box_retention'])} | "
                f"{100 * e['matched']:.1f} % | {e['mask_iou']:.3f} ({e['mask_iou_p10']:.3f}) | "
                f"{e['protos_cosine']:.4f} / {e['mc_cosine']:.4f} | {ms} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    shared = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="float edgeseg model (default: the embedded one)")
    p.add_argument("--data", type=Path, default=shared / "datasets" / "coco128-seg.yaml", help="dataset yaml")
    p.add_argument("--k", default="2,4", help="fold counts (default 2,4)")
    p.add_argument("--num", type=int, default=64, help="calibration images per fold (default 64)")
    p.add_argument(
        "--attribution",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one setting per layer group back in float, on the smallest k (default on)",
    )
    p.add_argument("--latency-runs", type=int, default=20, help="1-thread latency runs per setting (fold 0; 0: skip)")
    p.add_argument("--quick", action="store_true", help="k = 2 on 16 images, 8 calibration images, no attribution")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "cross_validation", help="models, links and results")
    args = p.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"cross_validation: {args.data}: not found (set EDGESEG_SHARED or --data)")
    info = read_model_info(args.model)
    dataset = load_dataset(args.data, names=info.names)
    ks = [int(v) for v in args.k.split(",")]
    if args.quick:
        dataset = dataclasses.replace(dataset, images=dataset.images[:16])
        ks, args.num, args.attribution, args.latency_runs = [2], 8, False, 3
        args.work = args.work.with_name(args.work.name + "-quick")
    summaries, raw = [], []
    for k in ks:
        configs = settings(args.model, args.num, args.attribution and k == min(ks))
        folds = [run_fold(k, i, args, dataset, configs) for i in range(k)]
        summaries.append(summarise(k, folds, dataset))
        raw += [{key: v for key, v in f.items() if key != "float"} for f in folds]
    for f in raw:  # predictions are large: only the scores go into the JSON
        for row in f["settings"].values():
            row.pop("predictions", None)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "cv.json").write_text(json.dumps({"summaries": summaries, "folds": raw, "num": args.num}, indent=1))
    md = markdown(summaries)
    (args.work / "cv.md").write_text(md)
    print("\n" + md)
    print(f"wrote {args.work / 'cv.json'} and {args.work / 'cv.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
