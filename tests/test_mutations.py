"""The mutation table of tools/mutate.py still points at the code: every mutation's text occurs exactly once.

A rename or a reformat that moves a mutated line would otherwise leave the table reporting "does not match"
only when someone runs the tool (minutes per mutation); this check costs nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutate", REPO / "tools" / "mutate.py")
mutate = importlib.util.module_from_spec(_spec)
sys.modules["mutate"] = mutate  # dataclasses look their module up there
_spec.loader.exec_module(mutate)


@pytest.mark.parametrize("mutation", mutate.MUTATIONS, ids=lambda m: m.name)
def test_mutation_text_occurs_once(mutation) -> None:
    path = REPO / mutation.path
    assert path.is_file(), f"{mutation.name}: {mutation.path} does not exist"
    count = path.read_text().count(mutation.old)
    assert count == 1, f"{mutation.name}: its text occurs {count} times in {mutation.path}, expected once"
    assert mutation.old != mutation.new, f"{mutation.name}: the mutation changes nothing"
