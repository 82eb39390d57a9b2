"""Prediction and evaluation on Ray (``edgeseg.engines.cluster``): one local Ray with 2 CPUs for the module, a
16-image subset of coco128-seg (the first 16 files of train2017, labels included), results compared with
the local commands'."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from edgeseg.cli import main
from edgeseg.engines.cluster import (
    ActorSpec,
    PredictorActor,
    RayConfig,
    actor_cpus,
    check_address,
    import_ray,
    predict_on_ray,
    prediction_dataset,
    read_files,
)
from edgeseg.errors import EdgesegError
from edgeseg.predict import Segmenter
from edgeseg.preprocess import load_image

pytestmark = pytest.mark.slow  # starts Ray

SUBSET = 16
RAY_TIMEOUT = 300  # a pipeline whose read stage cannot get a CPU waits forever: this turns that into a failure


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray with 2 CPUs for the whole module (start-up takes seconds); edgeseg uses it as it is."""
    ray = import_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def subset(coco128_dir, tmp_path_factory) -> Path:
    """images/ and labels/ of the first 16 coco128-seg images (a dataset for val, a folder for predict)."""
    root = tmp_path_factory.mktemp("coco16")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for image in sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:SUBSET]:
        shutil.copy(image, root / "images" / image.name)
        label = coco128_dir / "labels" / "train2017" / f"{image.stem}.txt"
        if label.is_file():
            shutil.copy(label, root / "labels" / label.name)
    return root


def _records_by_image(records: list[dict]) -> dict[str, list[str]]:
    """Order-insensitive view of predict records: per image, the sorted JSON of its detections."""
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r["image"], []).append(json.dumps(r, sort_keys=True))
    return {image: sorted(rows) for image, rows in out.items()}


def _local_records(model: Path, sources: list[str], tmp_path: Path) -> list[dict]:
    out = tmp_path / "local.json"
    assert main(["predict", str(model), *sources, "--save-json", str(out)]) == 0
    return json.loads(out.read_text())


def test_actor_cpus_are_unit_fractions_that_fill_whole_cpus():
    assert actor_cpus(2, 2) == 1.0
    assert actor_cpus(1, 8) == 1.0
    assert actor_cpus(3, 2) == 0.5  # 1/k: two 1-CPU nodes hold two actors each (2/3 would fit one each)
    assert actor_cpus(9, 4) == pytest.approx(1 / 3)
    with pytest.raises(EdgesegError):
        actor_cpus(2, 0)


def test_ray_config_and_address_errors_are_one_line():
    with pytest.raises(EdgesegError, match="actors must be >= 1"):
        RayConfig(actors=0)
    with pytest.raises(EdgesegError, match="expected HOST:PORT"):
        check_address("nowhere")
    with pytest.raises(EdgesegError, match=r"--ray-address 127\.0\.0\.1:1: no Ray cluster answers here") as err:
        check_address("127.0.0.1:1")
    assert "\n" not in str(err.value)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, capsys, default_model, tmp_path):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EdgesegError, match=r'pip install "edgeseg\[ray\]"'):
        import_ray()
    assert main(["predict", str(default_model), str(tmp_path), "--ray", "--save-json", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "edgeseg[ray]"' in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--save-parquet", "out"], "--save-parquet needs --ray"),
        (["--actors", "2"], "--actors needs --ray"),
        (["--ray", "--out", "overlays", "--save-json", "x.json"], "--out does not work with --ray"),
        (["--ray", "--workers", "2", "--save-json", "x.json"], "--workers does not work with --ray"),
        (["--ray"], "give one of them"),
        (["--ray", "--save-json", "x.json", "--save-parquet", "out"], "give one of them"),
    ],
)
def test_predict_ray_options_are_checked_before_any_work(args, message, default_model, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(default_model), str(tmp_path), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.json").exists()


def test_predict_ray_refuses_videos_cameras_and_streams_in_one_line(default_model, capsys, tmp_path):
    assert main(["predict", str(default_model), "0", "--ray", "--save-json", str(tmp_path / "x.json")]) == 1
    assert capsys.readouterr().err == "edgeseg: error: 0: videos, cameras and streams run without --ray\n"


def test_actor_reads_the_pixels_load_image_reads_exif_included(default_model, tmp_path):
    """The actor decodes bytes read by the read stage; an EXIF-rotated JPEG must come out as load_image
    gives it (rotated), and its records must equal Segmenter's on the loaded image. In-process: no Ray."""
    pa = pytest.importorskip("pyarrow")
    from PIL import Image

    image = np.zeros((60, 100, 3), np.uint8)
    image[:, :50] = (255, 40, 40)
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(image).save(path, exif=exif.tobytes())
    assert load_image(path).shape[:2] == (100, 60)

    actor = PredictorActor(ActorSpec(Segmenter(default_model)))
    rows = actor(read_files(pa.table({"index": [0], "path": [str(path)]}))).to_pylist()
    assert (rows[0]["height"], rows[0]["width"]) == (100, 60) and rows[0]["error"] is None
    assert rows[0]["detections"] == Segmenter(default_model)(load_image(path)).to_records(str(path))


@pytest.mark.timeout(RAY_TIMEOUT)
def test_predict_ray_records_equal_predict_save_json(ray_session, default_model, subset, tmp_path):
    """Two actors on two CPUs hold every CPU: this also hangs (and times out) if the read stage needs one."""
    local = _local_records(default_model, [str(subset / "images")], tmp_path)
    out = tmp_path / "ray.json"
    assert main(["predict", str(default_model), str(subset / "images"), "--ray", "--actors", "2", "--save-json", str(out)]) == 0
    on_ray = json.loads(out.read_text())
    assert len({r["image"] for r in local}) >= SUBSET // 2  # most images have objects: the comparison is not empty
    assert _records_by_image(on_ray) == _records_by_image(local)
    assert on_ray == local  # and gathered back in listing order, the JSON is the same file


@pytest.mark.timeout(RAY_TIMEOUT)
def test_val_ray_equals_val(ray_session, default_model, subset, tmp_path, monkeypatch):
    import edgeseg.engines.cluster

    pipelines = []
    build = edgeseg.engines.cluster.prediction_dataset
    monkeypatch.setattr(edgeseg.engines.cluster, "prediction_dataset", lambda *a, **k: pipelines.append(1) or build(*a, **k))
    metrics = {}
    for name, extra in (("local", []), ("ray", ["--ray", "--actors", "2"])):
        out = tmp_path / f"{name}.json"
        assert main(["val", str(default_model), "--data", str(subset), "--save-json", str(out), *extra]) == 0
        metrics[name] = json.loads(out.read_text())["models"][0]
    assert pipelines == [1]  # --ray did predict on Ray, once
    keys = ("box_map50_95", "box_map50", "mask_map50_95", "mask_map50")
    assert metrics["ray"]["images"] == metrics["local"]["images"] == SUBSET
    assert [round(metrics["ray"][k], 4) for k in keys] == [round(metrics["local"][k], 4) for k in keys]
    assert metrics["local"]["box_map50_95"] > 0.3  # a real evaluation, not two empty ones
    coco_results = [json.loads((tmp_path / f"{name}_predictions.json").read_text()) for name in ("local", "ray")]
    assert coco_results[0] == coco_results[1] and len(coco_results[0]) > SUBSET  # the same COCO results, in the same order


@pytest.mark.timeout(RAY_TIMEOUT)
def test_corrupt_images_become_error_rows_and_the_good_ones_finish(ray_session, default_model, subset, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(subset / "images", folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    (folder / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    parquet = tmp_path / "rows"
    assert main(["predict", str(default_model), str(folder), "--ray", "--save-parquet", str(parquet)]) == 0
    captured = capsys.readouterr()
    assert f"{SUBSET} image(s)/frame(s)" in captured.out and "skipped 3 item(s)" in captured.err

    rows = pq.read_table(parquet).to_pylist()
    assert sorted(r["index"] for r in rows) == list(range(SUBSET + 3))  # every image once
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"] is not None}
    assert errors == {
        "empty.jpg": "empty file, not an image",
        "noise.png": "not a readable image (corrupt or unsupported format)",
        "text.jpg": "not a readable image (corrupt or unsupported format)",
    }
    good = [r for r in rows if r["error"] is None]
    assert all(r["width"] > 0 and r["height"] > 0 for r in good)
    records = [d for r in good for d in r["detections"]]
    assert _records_by_image(records) == _records_by_image(_local_records(default_model, [str(folder)], tmp_path))


@pytest.mark.timeout(RAY_TIMEOUT)
def test_an_actor_that_dies_mid_job_still_leaves_every_image_processed_once(ray_session, default_model, subset, tmp_path):
    marker = tmp_path / "died"

    class DyingActor(PredictorActor):  # defined here, so Ray ships it by value to the workers
        calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 2 and not marker.exists():  # the first actor to reach its 2nd batch dies, once
                marker.touch()
                os._exit(1)
            return super().__call__(batch)

    images = sorted((subset / "images").glob("*.jpg"))
    items = [{"index": i, "path": str(p)} for i, p in enumerate(images)]
    spec = ActorSpec(Segmenter(default_model))
    ds = prediction_dataset(items, spec, config=RayConfig(actors=2, batch_size=2), cluster_cpus=2, actor=DyingActor)
    rows = [r for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None) for r in batch.to_pylist()]
    assert marker.exists()  # an actor did die mid-job
    assert sorted(r["index"] for r in rows) == list(range(len(images)))  # each image exactly once
    records = [d for r in sorted(rows, key=lambda r: r["index"]) for d in r["detections"]]
    assert records == _local_records(default_model, [str(p) for p in images], tmp_path)


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_model_the_actors_cannot_open_fails_in_one_line(ray_session, default_model, subset, tmp_path):
    model = tmp_path / "only-here.onnx"
    shutil.copy(default_model, model)
    segmenter = Segmenter(model)
    model.unlink()  # as if the file were on this machine only, not on the Ray nodes
    with pytest.raises(EdgesegError) as err:
        predict_on_ray(segmenter, [str(subset / "images")], config=RayConfig(actors=1), save_json=tmp_path / "x.json", show_progress=False)
    assert str(err.value) == f"{model}: no such file"


def test_memory_error_on_an_image_is_an_error_row_not_a_failed_job(default_model, coco128_images):
    """In-process (no Ray): the actor's rows for a batch in which one image runs out of memory."""
    pa = pytest.importorskip("pyarrow")

    actor = PredictorActor(ActorSpec(Segmenter(default_model)))
    segment = actor.predictor

    def out_of_memory_on_the_second(image):
        if out_of_memory_on_the_second.calls == 1:
            out_of_memory_on_the_second.calls += 1
            raise MemoryError
        out_of_memory_on_the_second.calls += 1
        return segment(image)

    out_of_memory_on_the_second.calls = 0
    actor.predictor = out_of_memory_on_the_second
    paths = [str(p) for p in coco128_images[:3]]
    rows = actor(read_files(pa.table({"index": [0, 1, 2], "path": paths}))).to_pylist()
    assert [r["error"] for r in rows] == [None, "out of memory on this image", None]
    assert rows[1]["detections"] == [] and rows[0]["detections"] == Segmenter(default_model)(load_image(paths[0])).to_records(paths[0])


@pytest.mark.timeout(RAY_TIMEOUT)
def test_an_image_that_kills_every_actor_is_tried_a_bounded_number_of_times(ray_session, default_model, subset, tmp_path):
    """A poison image (a crash in a decoder, the kernel's OOM killer) kills each actor that tries it: after
    ``RayConfig.max_tries`` deaths it is an error row, and every other image still comes back once."""
    tries = tmp_path / "tries"
    tries.mkdir()

    class PoisonedActor(PredictorActor):  # defined here, so Ray ships it by value to the workers
        def row(self, item):
            if item["path"].endswith("poison.jpg"):
                (tries / str(len(list(tries.iterdir())))).touch()
                os._exit(1)
            return super().row(item)

    images = sorted((subset / "images").glob("*.jpg"))[:6]
    poison = tmp_path / "poison.jpg"
    shutil.copy(images[0], poison)
    paths = [*images[:3], poison, *images[3:]]
    items = [{"index": i, "path": str(p)} for i, p in enumerate(paths)]
    spec = ActorSpec(Segmenter(default_model))
    config = RayConfig(actors=2, batch_size=2, max_tries=2)
    ds = prediction_dataset(items, spec, config=config, cluster_cpus=2, actor=PoisonedActor)
    rows = [r for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None) for r in batch.to_pylist()]
    assert sorted(r["index"] for r in rows) == list(range(len(paths)))  # each image exactly once
    errors = {r["index"]: r["error"] for r in rows if r["error"] is not None}
    assert errors == {3: "the worker died on this image 2 times (a crash, or out of memory); not tried again"}
    assert len(list(tries.iterdir())) == 2  # tried exactly max_tries times
    records = [d for r in sorted(rows, key=lambda r: r["index"]) if r["error"] is None for d in r["detections"]]
    assert records == _local_records(default_model, [str(p) for p in paths if p != poison], tmp_path)
