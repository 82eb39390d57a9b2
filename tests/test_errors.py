"""The error vocabulary: ``Problem`` is the ``(where, problem)`` pair the result types always held, typed."""

from __future__ import annotations

import json
import pickle

from edgeseg.errors import EdgesegError, Problem
from edgeseg.sources import collect_images


def test_problem_is_the_pair_it_replaces():
    p = Problem("images/a.jpg", "not a readable image")
    assert p == ("images/a.jpg", "not a readable image") and hash(p) == hash(("images/a.jpg", "not a readable image"))
    where, problem = p
    assert (where, problem) == (p.where, p.problem)
    # JSON writes it exactly as the plain tuple it replaces, and reads back equal to it.
    old = [("images/a.jpg", "not a readable image"), ("b.png", "no such file")]
    new = [Problem(*t) for t in old]
    assert json.dumps(new) == json.dumps(old) == '[["images/a.jpg", "not a readable image"], ["b.png", "no such file"]]'
    assert [Problem(*t) for t in json.loads(json.dumps(new))] == new == old
    back = pickle.loads(pickle.dumps(p))  # what Ray's workers hand back
    assert back == p and type(back) is Problem


def test_problem_reads_as_the_one_line_error_of_the_same_item(tmp_path):
    missing = tmp_path / "missing.jpg"
    found = collect_images([missing])
    assert found.problems == [(str(missing), "no such file or directory")]
    (problem,) = found.problems
    assert type(problem) is Problem
    assert str(problem) == str(EdgesegError(problem.problem, problem.where)) == f"{missing}: no such file or directory"
