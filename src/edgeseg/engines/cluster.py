"""The Ray engine: prediction and evaluation on a Ray cluster (``pip install "edgeseg[ray]"``): the same code on a laptop
and on a cluster (``ray start``, KubeRay).

Ray Data does the work. The image list (``sources.collect_images``, the one listing rule) becomes a dataset
of ``(index, path)`` rows; a read stage loads each file's bytes; a pool of ``PredictorActor``s (``actors.py``), each with one
loaded model and one intra-op thread, decodes the bytes (``preprocess.decode_image``: the pixels
``load_image`` gives) and predicts. Each output row holds the image's ``path``, ``width``, ``height``, its
``detections`` (the records of ``predict --save-json``, or COCO results records for ``val``) and ``error``:
a bad image is a row with the one-line problem, never a failed job. An actor that dies is restarted by
Ray and its batch retried, so every image still comes back once; an image that kills every actor that tries it
(a crash in a decoder, the OOM killer) is tried ``RayConfig.max_tries`` times (a small ``TryCounter`` actor
counts the tries that never finished), then becomes an error row, as does a ``MemoryError`` in an actor.

Sizing: the read stage asks for no CPU (it only moves bytes), so an actor pool that holds every CPU cannot
starve it (a read stage wanting one CPU would wait forever behind such a pool). Actors ask for one CPU each,
or ``1/k`` of one when there are ``k`` times more actors than CPUs, so every node fits whole actors.

Paths (model, images, ``--save-parquet`` directory) must be reachable under the same name on every node
of the cluster: a shared file system, as in docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgesegError, Problem, first_line
from ..fileio import write_json_atomic
from ..outputs.files import check_writable
from ..progress import progress
from ..sources import collect_images, source_kind
from .actors import ActorSpec, PredictorActor, TryCounter, read_files
from .base import PER_CORE_LIMIT, Predictor
from .summary import PredictSummary

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

RAY_EXTRA = 'pip install "edgeseg[ray]"'
ACTORS_PER_READER = 4  # read tasks per actor pool: reading bytes is ~100x faster than predicting them


def import_ray():
    """The ``ray`` module (with Ray Data), or a one-line EdgesegError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data comes with the ray[data] extra, not with plain ray)
    except ImportError:
        raise EdgesegError(f"running on Ray needs Ray Data: {RAY_EXTRA}") from None
    return ray


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide to run. ``address``: the cluster to join (``HOST:PORT`` of its head, or ``auto``
    for the cluster this machine is part of); None starts a local Ray with this machine's cores.
    ``actors``: models loaded at once (default: one per CPU of the cluster, at most one per image).
    ``batch_size``: images per actor call. ``max_tries``: how many times an image that kills the actor trying
    it is tried before it becomes an error row."""

    address: str | None = None
    actors: int | None = None
    batch_size: int = 4
    max_tries: int = 3

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise EdgesegError(f"actors must be >= 1, got {self.actors}")
        if self.batch_size < 1:
            raise EdgesegError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_tries < 1:
            raise EdgesegError(f"max_tries must be >= 1, got {self.max_tries}")


def check_address(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address`` (Ray itself retries for long)."""
    from ..address import parse_host_port

    if address in ("auto", "local"):
        return
    try:
        host, port = parse_host_port(address)
    except ValueError as exc:
        raise EdgesegError(f"expected HOST:PORT (e.g. 127.0.0.1:6379) or auto: {exc}", f"--ray-address {address}") from None
    try:
        socket.create_connection((host.split("://", 1)[-1], port), timeout=5).close()
    except OSError as exc:
        raise EdgesegError(
            f"no Ray cluster answers here ({exc.strerror or exc}); start one with `ray start --head`", f"--ray-address {address}"
        ) from None


def connect(address: str | None = None) -> int:
    """Join the Ray cluster at ``address`` (None: start a local Ray with this machine's cores), unless this
    process already has a Ray session, which is then used as it is. Returns the cluster's CPU count."""
    ray = import_ray()
    if not ray.is_initialized():
        if address is not None:
            check_address(address)
        local = {"include_dashboard": False} if address is None else {}
        try:
            ray.init(address=address or "local", log_to_driver=False, logging_level=logging.WARNING, **local)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if address is None:
                raise EdgesegError(f"cannot start a local Ray ({first_line(exc)})") from None
            # Recent Ray clusters want a token, which Ray sends to a named address only when told to.
            hint = "; if it uses token authentication, set RAY_AUTH_MODE=token" if "RAY_AUTH_MODE" not in os.environ else ""
            raise EdgesegError(f"cannot join the Ray cluster ({first_line(exc)}{hint})", f"--ray-address {address}") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise EdgesegError("the Ray cluster has no CPU to run actors on")
    return cpus


def actor_cpus(actors: int, cluster_cpus: int) -> float:
    """CPUs each actor asks for: one, or ``1/k`` when ``k`` actors must share a CPU. Always a unit
    fraction, so a node's whole CPUs hold whole actors (``C/N`` would leave slivers no actor fits in)."""
    if actors < 1 or cluster_cpus < 1:
        raise EdgesegError(f"need at least one actor and one CPU, got {actors} actor(s) on {cluster_cpus} CPU(s)")
    if actors > PER_CORE_LIMIT * cluster_cpus:
        raise EdgesegError(
            f"--actors: at most {PER_CORE_LIMIT * cluster_cpus} ({PER_CORE_LIMIT} per CPU of the cluster, "
            f"{cluster_cpus} CPU(s)): each actor loads its own model, so more only add memory; got {actors}"
        )
    return 1.0 / math.ceil(actors / cluster_cpus)


def prediction_dataset(
    items: Sequence[Mapping[str, Any]], spec: ActorSpec, *, config: RayConfig, cluster_cpus: int, actor: type = PredictorActor
) -> ray.data.Dataset:
    """The Ray Data pipeline (lazy): ``items`` (``index``, ``path`` and, for COCO rows, ``image_id``) -> read
    stage -> a pool of ``actor``s -> rows of ``row_schema(spec.kind)``, in no particular order. ``actor``
    is ``PredictorActor`` or a subclass of it."""
    ray = import_ray()
    actors = min(config.actors or cluster_cpus, max(len(items), 1))
    ds = ray.data.from_items([dict(item) for item in items])
    # No CPU asked, so the actors cannot starve it; a few tasks only (each is a worker process to start,
    # and unbounded zero-CPU tasks would start dozens), which read far faster than the actors predict.
    read = ray.data.TaskPoolStrategy(size=math.ceil(actors / ACTORS_PER_READER))
    ds = ds.map_batches(read_files, batch_format="pyarrow", batch_size=config.batch_size, num_cpus=0, compute=read)
    counter = ray.remote(num_cpus=0)(TryCounter).remote()  # lives as long as the dataset holds its handle
    return ds.map_batches(
        actor,
        fn_constructor_kwargs={"spec": spec, "tries": (counter, config.max_tries)},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=actor_cpus(actors, cluster_cpus),
        batch_format="pyarrow",
        batch_size=config.batch_size,
        # a dead actor is restarted and its batch retried without end (Ray Data's default too): TryCounter bounds the tries
        max_restarts=-1,
        max_task_retries=-1,
    )


def quiet_ray_data(*, progress_bars: bool) -> None:
    """Ray Data as a command-line user wants it: its per-stage progress bars on or off, no INFO lines about
    plans and execution. Call before building a dataset (a dataset keeps the settings it was made with)."""
    ray = import_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress_bars
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.util.debug.log_once("ray_data_progress_manager_disabled")  # its "progress bars disabled" hint: we chose that


def gather_rows(ds: ray.data.Dataset, *, desc: str, total: int, show_progress: bool) -> list[dict[str, Any]]:
    """All output rows, gathered on this process with edgeseg's progress bar, sorted by ``index``."""
    rows: list[dict[str, Any]] = []
    failed = objects = 0
    with progress(desc=desc, total=total, enabled=show_progress) as bar:
        for batch in _batches(ds):
            got = batch.to_pylist()
            rows += got
            failed += sum(r["error"] is not None for r in got)
            objects += sum(len(r["detections"]) for r in got)
            bar.update(len(got))
            bar.set_postfix(objects=objects, failed=failed)
    return sorted(rows, key=lambda r: r["index"])


def _batches(ds: ray.data.Dataset) -> Iterator[pa.Table]:
    """Output blocks as they finish."""
    with _one_line_failures():
        yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)


@contextlib.contextmanager
def _one_line_failures() -> Iterator[None]:
    """A failed job ends in one line (the whole chain stays attached for ``--debug``): an EdgesegError
    raised in an actor (e.g. the model missing on a node) as itself, anything else as its innermost cause."""
    try:
        yield
    except EdgesegError:
        raise
    except Exception as exc:
        raise _one_line(exc) from exc


def _one_line(exc: BaseException) -> EdgesegError:
    causes: list[BaseException] = []  # exc and what it wraps, outermost first
    while isinstance(exc, BaseException) and all(exc is not c for c in causes):
        causes.append(exc)
        exc = exc.__cause__ or getattr(exc, "cause", None) or exc.__context__
    # An actor whose constructor raised reaches us as text only: Ray's ActorDiedError.error_msg, a traceback.
    lines = [c.error_msg.strip().splitlines()[-1] for c in causes if getattr(c, "error_msg", None)]
    lines += [f"{type(c).__module__}.{type(c).__name__}: {first_line(c)}" for c in reversed(causes)]
    mine = f"{EdgesegError.__module__}.{EdgesegError.__name__}: "
    for line in lines:
        if line.startswith(mine):
            return EdgesegError(line.removeprefix(mine))
    kind, _, message = lines[0].partition(": ")
    kind = kind.rpartition(".")[2]
    hint = "; is the same edgeseg installed on every node?" if kind in ("ImportError", "ModuleNotFoundError") else ""
    return EdgesegError(f"the Ray job failed ({kind}: {message}{hint})")


def _check_parquet_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EdgesegError("is a file, expected a directory for Parquet files", p)
    if p.is_dir() and any(p.iterdir()):
        raise EdgesegError("already holds files: give a new or empty directory for the Parquet files", p)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesegError(f"cannot create the Parquet directory ({exc.strerror or exc})", p) from None
    return p


def predict_on_ray(
    predictor: Predictor,
    sources: Sequence[str | os.PathLike],
    *,
    config: RayConfig = RayConfig(),
    save_json: str | os.PathLike | None = None,
    save_parquet: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> PredictSummary:
    """``predict`` on Ray: the images of ``sources`` (files, directories, globs; videos, cameras and
    streams are refused) through a pool of actors, each with its own copy of ``predictor`` (model and options). ``save_json``
    gets the records of ``predict --save-json`` (gathered here, in listing order); ``save_parquet`` a
    directory of Parquet files written by the workers (one row per image, ``row_schema("records")``). Bad
    images are listed in ``summary.failed``."""
    if (save_json is None) == (save_parquet is None):
        raise EdgesegError("give one of save_json (a JSON file) or save_parquet (a directory) for the results")
    streams = [os.fspath(s) for s in sources if source_kind(os.fspath(s)) != "files"]
    found = collect_images([s for s in sources if os.fspath(s) not in streams])
    summary = PredictSummary(failed=list(found.problems))
    summary.failed += [Problem(s, "videos, cameras and streams run without --ray") for s in streams]
    if not found.paths:
        return summary
    if save_json is not None:
        check_writable(save_json, "JSON")
    parquet_dir = _check_parquet_dir(save_parquet) if save_parquet is not None else None
    spec = ActorSpec(predictor)
    items = [{"index": i, "path": str(p)} for i, p in enumerate(found.paths)]
    cpus = connect(config.address)
    # Written by the workers, Ray Data's bars show progress; gathered here, edgeseg's bar counts images.
    quiet_ray_data(progress_bars=show_progress and parquet_dir is not None)
    ds = prediction_dataset(items, spec, config=config, cluster_cpus=cpus)
    if parquet_dir is not None:
        with _one_line_failures():
            ds.write_parquet(os.fspath(parquet_dir.resolve()), ray_remote_args={"num_cpus": 0})
        rows = _written_rows(parquet_dir, len(items), summary)
    else:
        rows = gather_rows(ds, desc="predict on Ray", total=len(items), show_progress=show_progress)
    for row in rows:
        if row["error"] is not None:
            summary.failed.append(Problem(row["path"], row["error"]))
            continue
        summary.processed += 1
        if parquet_dir is not None:
            summary.detections += row["objects"]
        else:
            summary.detections += len(row["detections"])
            summary.records.extend(row["detections"])
    if save_json is not None:
        write_json_atomic(save_json, summary.records)
    return summary


def _written_rows(directory: Path, expected: int, summary: PredictSummary) -> list[dict[str, Any]]:
    """The rows written to ``directory`` as this machine sees them, with the count of their detections
    (``objects``) instead of the detections."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(directory, columns=["index", "path", "detections", "error"])
    table = table.append_column("objects", pc.fill_null(pc.list_value_length(table.column("detections")), 0)).drop_columns(["detections"])
    summary.outputs.append(directory)
    if table.num_rows != expected:
        summary.warnings.append(
            f"{directory}: {table.num_rows} of {expected} rows are visible from this machine; "
            "on a cluster the Parquet directory must be on storage every node shares"
        )
    return sorted(table.to_pylist(), key=lambda r: r["index"])
