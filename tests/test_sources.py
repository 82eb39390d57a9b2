"""The one image-listing policy and the one source kind; no shared data needed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.sources import ImageFiles, collect_images, image_directory, images_in, readable_images


def _write_image(path: Path, value: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((8, 12, 3), value, np.uint8)
    image[0, 0] = (value, 255 - value, 7)
    assert cv2.imwrite(str(path), image)
    return image


@pytest.fixture()
def tree(tmp_path) -> Path:
    """a.png, b/c.png, b/d/e.PNG, .hidden/f.png, .g.png, notes.txt, broken.jpg (not an image)."""
    root = tmp_path / "images"
    for i, rel in enumerate(["a.png", "b/c.png", "b/d/e.PNG", ".hidden/f.png", ".g.png"]):
        _write_image(root / rel, 10 * i)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_directories_are_recursive_sorted_and_skip_hidden_entries(tree):
    rel = [p.relative_to(tree).as_posix() for p in images_in(tree)]
    assert rel == ["a.png", "b/c.png", "b/d/e.PNG", "broken.jpg"]


def test_collect_images_mixes_files_directories_and_globs_in_argument_order(tree, tmp_path):
    found = collect_images([tree / "b", str(tree / "*.png"), tree / "notes.txt", tmp_path / "missing.jpg",
                            str(tmp_path / "nothing*.png"), tmp_path])  # fmt: skip
    rel = [p.relative_to(tmp_path).as_posix() for p in found.paths]
    # a directory's images, then the glob's (the hidden .g.png matches '*.png' only with the dot: glob skips it),
    # then a file named directly (tried whatever its suffix), then the parent directory's images, recursively
    assert rel == ["images/b/c.png", "images/b/d/e.PNG", "images/a.png", "images/notes.txt",
                   "images/a.png", "images/b/c.png", "images/b/d/e.PNG", "images/broken.jpg"]  # fmt: skip
    assert found.problems == [(str(tmp_path / "missing.jpg"), "no such file or directory"),
                              (str(tmp_path / "nothing*.png"), "pattern matches no image files")]  # fmt: skip


def test_empty_directory_is_a_problem_not_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    found = collect_images([tmp_path / "empty"])
    assert found.paths == [] and found.problems == [(str(tmp_path / "empty"), "directory holds no images")]


def test_image_files_yield_images_and_one_line_reasons_in_order(tree):
    items = list(ImageFiles(images_in(tree)))
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert [i.ok for i in items] == [True, True, True, False]
    np.testing.assert_array_equal(items[1].image, cv2.imread(str(tree / "b" / "c.png")))
    assert items[3].error == "not a readable image (corrupt or unsupported format)"
    assert items[3].image is None and items[3].name == str(tree / "broken.jpg")


def test_readable_images_replace_unreadable_ones_and_record_them(tree):
    paths = [tree / "broken.jpg", tree / "a.png", tree / "missing.png", tree / "b" / "c.png", tree / "b" / "d" / "e.PNG"]
    skipped: list[tuple[str, str]] = []
    got = [item.name for item in readable_images(paths, 2, skipped)]
    assert got == [str(tree / "a.png"), str(tree / "b" / "c.png")]
    assert skipped == [(str(tree / "broken.jpg"), "not a readable image (corrupt or unsupported format)"),
                       (str(tree / "missing.png"), "no such file")]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "absent", "no such directory"),
        (lambda d: _write_image(d / "x.png", 1) is not None and d / "x.png", "not a directory (expected a folder of calibration images)"),
        (lambda d: (d / "txt").mkdir() or (d / "txt" / "a.txt").write_text("x") and d / "txt", "holds no image files"),
    ],
)
def test_image_directory_errors_name_the_directory_and_the_problem(tmp_path, make, reason):
    target = make(tmp_path)
    with pytest.raises(EdgesegError) as err:
        image_directory(target, "calibration")
    assert str(err.value) == f"{target}: {reason}"


def test_images_with_the_same_name_get_distinct_overlays(tmp_path, default_model):
    from edgeseg import PredictOutputs, Segmenter, predict_sources
    from edgeseg.predict import SAMPLE_IMAGE

    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "frame.jpg").write_bytes(SAMPLE_IMAGE.read_bytes())
    summary = predict_sources(Segmenter(default_model), [tmp_path / "a", tmp_path / "b", tmp_path / "c"],
                              outputs=PredictOutputs(out_dir=tmp_path / "out"), show_progress=False)  # fmt: skip
    assert [p.name for p in summary.overlays] == ["frame.jpg", "frame_1.jpg", "frame_2.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame.jpg", "frame_1.jpg", "frame_2.jpg"]
