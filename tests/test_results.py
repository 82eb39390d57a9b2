"""Detections as a sequence: indexing (position, slice, boolean mask, positions) and iteration, every field
carried, checked against hand-written expectations and against supervision's ``Detections`` on the same index."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.results import Detections

NAMES = {0: "person", 1: "car", 2: "dog"}
SHAPE = (100, 120)
# Three detections, each field's row i written out so an expectation is a list of rows, not a computation.
BOXES = [[1, 2, 11, 22], [30, 40, 60, 45], [70, 5, 72, 9]]
SCORES = [0.9, 0.5, 0.7]
CLASSES = [0, 2, 1]
TRACKS = [7, 3, 12]
ORIGINS = [[1, 2], [30, 40], [70, 5]]
MASKS = [np.eye(20, 10, dtype=bool), np.ones((5, 30), bool), np.array([[True, False], [False, True], [True, True], [False, False]])]


def three() -> Detections:
    return Detections(
        xyxy=np.array(BOXES, np.float32),
        scores=np.array(SCORES, np.float32),
        class_ids=np.array(CLASSES, np.int64),
        image_shape=SHAPE,
        names=NAMES,
        masks=list(MASKS),
        mask_origins=np.array(ORIGINS, np.int64),
        track_ids=np.array(TRACKS, np.int64),
    )


def assert_rows(got: Detections, rows: list[int]) -> None:
    """``got`` holds exactly rows ``rows`` of ``three()``, in that order, every field."""
    assert isinstance(got, Detections)
    assert len(got) == len(rows)
    assert got.xyxy.dtype == np.float32 and got.xyxy.shape == (len(rows), 4)
    assert got.xyxy.tolist() == [BOXES[r] for r in rows]
    assert got.scores.tolist() == pytest.approx([SCORES[r] for r in rows])
    assert got.class_ids.dtype == np.int64 and got.class_ids.tolist() == [CLASSES[r] for r in rows]
    assert got.track_ids.tolist() == [TRACKS[r] for r in rows]
    assert got.mask_origins.shape == (len(rows), 2) and got.mask_origins.tolist() == [ORIGINS[r] for r in rows]
    assert len(got.masks) == len(rows)
    for mask, r in zip(got.masks, rows):
        np.testing.assert_array_equal(mask, MASKS[r])
    assert got.class_names == [NAMES[CLASSES[r]] for r in rows]
    assert got.image_shape == SHAPE and got.names == NAMES
    for k, r in enumerate(rows):  # the full-image mask follows its origin
        np.testing.assert_array_equal(got.full_mask(k), three().full_mask(r))


CASES = [
    (0, [0]),
    (2, [2]),
    (-1, [2]),
    (np.int64(1), [1]),
    (slice(1, None), [1, 2]),
    (slice(None, None, -1), [2, 1, 0]),
    (slice(5, 9), []),
    (np.array([True, False, True]), [0, 2]),
    (np.array([False, False, False]), []),
    ([True, True, False], [0, 1]),
    (np.array([2, 0]), [2, 0]),
    ([1, 1], [1, 1]),
    ([], []),
    (np.array([], np.int64), []),
]


@pytest.mark.parametrize(("index", "rows"), CASES, ids=repr)
def test_index_selects_exactly_the_expected_rows(index, rows):
    assert_rows(three()[index], rows)


def test_filters_read_like_supervision():
    det = three()
    assert_rows(det[det.scores > 0.6], [0, 2])
    assert_rows(det[det.class_ids == 2], [1])
    assert_rows(det[det.scores > 1.0], [])


def test_iteration_yields_one_detection_each_in_order():
    items = list(three())
    assert len(items) == 3
    for r, item in enumerate(items):
        assert_rows(item, [r])
    assert list(Detections.empty(SHAPE)) == []


def test_fields_that_are_absent_stay_absent():
    bare = Detections(np.array(BOXES, np.float32), np.array(SCORES, np.float32), np.array(CLASSES, np.int64), SHAPE)
    one = bare[1]
    assert one.masks is None and one.mask_origins is None and one.track_ids is None
    assert one.xyxy.tolist() == [BOXES[1]] and one.class_names == ["2"]


def test_selection_copies_arrays():
    det = three()
    det[0].xyxy[0, 0] = -5
    det[[0]].track_ids[0] = 99
    assert det.xyxy[0, 0] == 1 and det.track_ids[0] == 7


@pytest.mark.parametrize(
    ("index", "error"),
    [
        (1.5, TypeError),
        ("person", TypeError),
        (True, TypeError),
        ((0, 1), TypeError),
        (None, TypeError),
        (np.array([0.0, 1.0]), TypeError),
        (3, IndexError),
        (-4, IndexError),
        ([0, 3], IndexError),
        (np.array([True, False]), IndexError),
        (np.ones((3, 1), bool), IndexError),
    ],
    ids=repr,
)
def test_bad_index_is_a_one_line_error(index, error):
    with pytest.raises(error) as exc:
        three()[index]
    assert "\n" not in str(exc.value) and str(exc.value)


def test_empty_detections_take_empty_selections_only():
    empty = Detections.empty(SHAPE)
    assert len(empty[:]) == 0 and len(empty[np.zeros(0, bool)]) == 0 and len(empty[[]]) == 0
    with pytest.raises(IndexError):
        empty[0]


@pytest.mark.parametrize(
    "index",
    [0, -1, slice(0, 2), slice(None, None, 2), [2, 0], np.array([1]), np.array([True, False, True]), np.zeros(3, bool)],
    ids=repr,
)
def test_same_rows_as_supervision(index):
    sv = pytest.importorskip("supervision")
    ours = three()
    theirs = sv.Detections(
        xyxy=ours.xyxy.copy(),
        confidence=ours.scores.copy(),
        class_id=ours.class_ids.copy(),
        tracker_id=ours.track_ids.copy(),
        data={"class_name": np.array(ours.class_names)},
    )[index]
    got = ours[index]
    assert got.xyxy.tolist() == theirs.xyxy.tolist()
    assert got.scores.tolist() == theirs.confidence.tolist()
    assert got.class_ids.tolist() == theirs.class_id.tolist()
    assert got.track_ids.tolist() == theirs.tracker_id.tolist()
    assert got.class_names == theirs.data["class_name"].tolist()


def test_a_class_without_a_name_is_its_digits_everywhere():
    """One lookup (``class_name``): the records, ``class_names`` and the drawn labels name a class the model has no
    name for by its digits, exactly as if the model called it that."""
    from edgeseg.draw import draw_detections
    from edgeseg.results import class_name

    partial = {0: "person"}
    det = Detections(np.array(BOXES, np.float32), np.array(SCORES, np.float32), np.array(CLASSES, np.int64), SHAPE, partial)
    spelled = Detections(det.xyxy, det.scores, det.class_ids, SHAPE, {0: "person", 1: "1", 2: "2"})
    assert det.class_names == ["person", "2", "1"] == [class_name(partial, c) for c in CLASSES]
    assert [r["class_name"] for r in det.to_records("x.jpg")] == ["person", "2", "1"]
    canvas = np.zeros((*SHAPE, 3), np.uint8)
    np.testing.assert_array_equal(draw_detections(canvas, det), draw_detections(canvas, spelled))
    assert not np.array_equal(draw_detections(canvas, det), draw_detections(canvas, Detections.empty(SHAPE)))
