"""Evaluation's predict step on the Ray engine (``RayPredictions``): the same COCO results as ``predict_records``,
from a pool of actors."""

from __future__ import annotations

from ..engines.base import Predictor
from ..engines.cluster import ActorSpec, RayConfig, connect, gather_rows, prediction_dataset, quiet_ray_data
from ..errors import Problem
from .datasets import Dataset
from .validation import size_mismatch


class RayPredictions:
    """``evaluate``'s ``predict`` step on Ray: the dataset's images through a pool of actors, COCO results
    records back in dataset order, the image-size check done here as in ``evaluate.predict_records``."""

    def __init__(self, config: RayConfig = RayConfig()) -> None:
        self.config = config

    def __call__(
        self, segmenter: Predictor, dataset: Dataset, *, desc: str = "val", show_progress: bool = False
    ) -> tuple[list[dict], list[int], list[Problem]]:
        spec = ActorSpec(segmenter, dict(dataset.category_map(segmenter.info.names)))
        items = [{"index": i, "path": str(p), "image_id": image_id} for i, (image_id, p) in enumerate(dataset.images)]
        cpus = connect(self.config.address)
        quiet_ray_data(progress_bars=False)
        ds = prediction_dataset(items, spec, config=self.config, cluster_cpus=cpus)
        sizes = dataset.image_sizes()
        records: list[dict] = []
        done: list[int] = []
        skipped: list[Problem] = []
        for row in gather_rows(ds, desc=f"{desc} on Ray", total=len(items), show_progress=show_progress):
            image_id = items[row["index"]]["image_id"]
            problem = row["error"] or size_mismatch((row["height"], row["width"]), sizes[image_id])
            if problem:
                skipped.append(Problem(row["path"], problem))
                continue
            records += row["detections"]
            done.append(image_id)
        return records, done, skipped
