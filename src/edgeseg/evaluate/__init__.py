"""Box and mask mAP of edgeseg models with a standard COCO evaluator (faster-coco-eval, else pycocotools).

``datasets`` turns ground truth (Ultralytics yaml, images/labels directory, COCO json) into a COCO
instances dict; ``validation`` predicts every image with ``Segmenter`` (through the local-threads engine) and scores the COCO results with
``coco``; ``metrics`` is the result type and its JSON files; ``tables`` prints them.
"""

from .coco import COCO80_NAMES, COCO80_TO_COCO91, Scores, category_ids, coco_evaluator_backend, is_coco80, score_predictions
from .datasets import Dataset, coco_dataset, directory_dataset, load_dataset, parse_yolo_label, yaml_dataset, yolo_dataset
from .metrics import EvalResult, prediction_paths, read_eval_results, save_results
from .tables import format_metrics_table, format_per_class, retention
from .validation import PredictRecords, ValConfig, check_imgsz, evaluate, evaluate_models, predict_records, size_mismatch

__all__ = [
    "COCO80_NAMES",
    "COCO80_TO_COCO91",
    "Dataset",
    "EvalResult",
    "PredictRecords",
    "Scores",
    "ValConfig",
    "category_ids",
    "check_imgsz",
    "coco_dataset",
    "coco_evaluator_backend",
    "directory_dataset",
    "evaluate",
    "evaluate_models",
    "format_metrics_table",
    "format_per_class",
    "is_coco80",
    "load_dataset",
    "parse_yolo_label",
    "predict_records",
    "prediction_paths",
    "read_eval_results",
    "retention",
    "save_results",
    "score_predictions",
    "size_mismatch",
    "yaml_dataset",
    "yolo_dataset",
]
