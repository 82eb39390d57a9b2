"""What runs inside the Ray engine's workers: the read stage (``read_files``), the actors that predict
(``PredictorActor``, each with one loaded model), the counter of tries that killed their actor (``TryCounter``)
and the rows they hand back (``row_schema``)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import EdgesegError, first_line
from ..preprocess import decode_image, read_image_file
from .base import Predictor

if TYPE_CHECKING:
    import pyarrow as pa


def _segmentation_type() -> pa.DataType:
    import pyarrow as pa

    return pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.string())])


def row_schema(kind: str) -> pa.Schema:
    """The output rows: ``detections`` are ``Detections.to_records`` records (``kind="records"``, predict) or
    ``Detections.to_coco`` records (``kind="coco"``, val). Explicit, so empty batches and Parquet files agree."""
    import pyarrow as pa

    if kind == "records":
        record = pa.struct(
            [
                ("image", pa.string()),
                ("class_id", pa.int64()),
                ("class_name", pa.string()),
                ("score", pa.float64()),
                ("bbox_xyxy", pa.list_(pa.float64())),
                ("segmentation", _segmentation_type()),
            ]
        )
    elif kind == "coco":
        record = pa.struct(
            [
                ("image_id", pa.int64()),
                ("category_id", pa.int64()),
                ("bbox", pa.list_(pa.float64())),
                ("score", pa.float64()),
                ("segmentation", _segmentation_type()),
            ]
        )
    else:
        raise ValueError(f"kind must be 'records' or 'coco', got {kind!r}")
    return pa.schema(
        [
            ("index", pa.int64()),
            ("path", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("detections", pa.list_(record)),
            ("error", pa.string()),
        ]
    )


@dataclass(frozen=True)
class ActorSpec:
    """What each actor loads: the predictor (pickled as the recipe to load it again, so its model file must be
    reachable under the same name on every node) and, for COCO rows (``category_map`` set), the model class id ->
    category id map; input rows then carry ``image_id``."""

    predictor: Predictor
    category_map: Mapping[int, int] | None = None

    def __post_init__(self) -> None:
        try:
            pickle.dumps(self.predictor)  # fail here, in one line, rather than deep in Ray's serialisation
        except EdgesegError:
            raise
        except Exception as exc:
            raise EdgesegError(f"the predictor cannot be sent to other processes ({first_line(exc)})") from None

    @property
    def kind(self) -> str:
        return "records" if self.category_map is None else "coco"


def read_files(batch: pa.Table) -> pa.Table:
    """Read stage: the bytes of each row's ``path`` (``data``), or the one-line problem (``error``)."""
    import pyarrow as pa

    data, errors = [], []
    for path in batch.column("path").to_pylist():
        try:
            data.append(read_image_file(path).tobytes())
            errors.append(None)
        except EdgesegError as exc:
            data.append(None)
            errors.append(exc.problem)
    return batch.append_column(pa.field("data", pa.binary()), pa.array(data, pa.binary())).append_column(
        pa.field("error", pa.string()), pa.array(errors, pa.string())
    )


class TryCounter:
    """Counts, per image index, the tries that started and never finished (the actor died on it). One per job, as
    a Ray actor with no CPU: the counts outlive the actors that die."""

    def __init__(self) -> None:
        self.unfinished: dict[int, int] = {}

    def start(self, index: int) -> int:
        """The tries of ``index`` that died before this one."""
        died = self.unfinished.get(index, 0)
        self.unfinished[index] = died + 1
        return died

    def finish(self, index: int) -> None:
        self.unfinished.pop(index, None)


class PredictorActor:
    """One loaded model (one intra-op thread) that turns batches of image bytes into output rows. With ``tries``
    (a ``TryCounter`` actor and the most tries), an image whose earlier tries killed their actor that many
    times is an error row instead of a new try."""

    def __init__(self, spec: ActorSpec, tries: tuple[Any, int] | None = None) -> None:
        import cv2

        cv2.setNumThreads(1)  # one CPU per actor: OpenCV's resize pool would take the others
        self.spec = spec
        self.tries = tries
        self.predictor = spec.predictor  # unpickled in this actor: its own loaded model, one intra-op thread
        self.schema = row_schema(spec.kind)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        return pa.Table.from_pylist([self._counted_row(item) for item in batch.to_pylist()], schema=self.schema)

    def _counted_row(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.tries is None:
            return self.row(item)
        import ray

        counter, most = self.tries
        died = ray.get(counter.start.remote(item["index"]))
        if died >= most:
            counter.finish.remote(item["index"])
            return {
                "index": item["index"],
                "path": item["path"],
                "width": None,
                "height": None,
                "detections": [],
                "error": f"the worker died on this image {died} times (a crash, or out of memory); not tried again",
            }
        out = self.row(item)
        counter.finish.remote(item["index"])  # in order before this actor's next start: Ray keeps a caller's order
        return out

    def row(self, item: dict[str, Any]) -> dict[str, Any]:
        out = {"index": item["index"], "path": item["path"], "width": None, "height": None, "detections": [], "error": item["error"]}
        if out["error"] is not None:
            return out
        try:
            image = decode_image(item["data"], item["path"])
            detections = self.predictor(image)
        except EdgesegError as exc:  # anything else but memory is a bug or a runtime failure: the job stops and says so
            out["error"] = exc.problem
            return out
        except MemoryError:  # a huge image: this one fails, the actor (its memory freed) goes on with the others
            out["error"] = "out of memory on this image"
            return out
        out["height"], out["width"] = (int(v) for v in image.shape[:2])
        if self.spec.category_map is None:
            out["detections"] = detections.to_records(item["path"])
        else:
            out["detections"] = detections.to_coco(item["image_id"], self.spec.category_map)
        return out
