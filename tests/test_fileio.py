"""The checks of JSON values read back (``fileio``): the bench and val readers share them."""

from __future__ import annotations

import json

import pytest

from edgeseg.fileio import is_count, is_number, is_real

# value as JSON text -> (is_count, is_real, is_number); json.loads reads NaN as Python's nan, true as True.
CASES = {
    "0": (True, True, True),
    "3": (True, True, True),
    "-1": (False, True, True),
    "2.5": (False, True, True),
    "2.0": (False, True, True),
    "NaN": (False, True, False),
    "true": (False, False, False),
    "false": (False, False, False),
    "null": (False, False, False),
    '"1"': (False, False, False),
    "[1]": (False, False, False),
}


@pytest.mark.parametrize("text", CASES)
def test_counts_reals_and_numbers_of_json_values(text):
    value = json.loads(text)
    assert (is_count(value), is_real(value), is_number(value)) == CASES[text]
