"""``Segmenter`` as the engines meet it: pickled as the recipe to load its model again (what Ray's actors get)."""

from __future__ import annotations

import pickle

import pytest

from edgeseg import DecodeOptions, EdgesegError, Segmenter, open_backend
from edgeseg.preprocess import load_image


def test_a_pickled_segmenter_loads_its_model_again_with_its_options_and_one_thread(default_model, coco128_images):
    seg = Segmenter(default_model, options=DecodeOptions(conf=0.4, max_det=5))
    copy = pickle.loads(pickle.dumps(seg))
    assert copy is not seg and copy.backend is not seg.backend  # its own session
    assert copy.options == seg.options and copy.model_path == seg.model_path.resolve()
    image = load_image(coco128_images[0])
    a, b = seg(image), copy(image)
    assert len(a) == len(b) > 0
    assert (a.xyxy == b.xyxy).all() and (a.class_ids == b.class_ids).all()
    sess_options = copy.backend.session.get_session_options()
    assert sess_options.intra_op_num_threads == 1


def test_a_segmenter_from_a_relative_path_is_sent_with_the_absolute_one(default_model, monkeypatch, tmp_path):
    """Ray's workers run in another directory: the recipe names the model file by its absolute path."""
    monkeypatch.chdir(default_model.parent)
    sent = pickle.dumps(Segmenter(default_model.name))
    monkeypatch.chdir(tmp_path)  # where the worker process runs
    assert pickle.loads(sent).model_path == default_model.resolve()


def test_a_segmenter_around_a_backend_object_cannot_be_sent_to_other_processes(default_model):
    seg = Segmenter(open_backend(default_model))
    with pytest.raises(EdgesegError, match="needs a Segmenter made from a model file"):
        pickle.dumps(seg)
