"""awbench.formatting: every number the project writes as text, with one blank (n/a)."""

import math

import numpy as np
import pytest

from awbench.formatting import (
    BLANK,
    finite_value,
    formatted,
    number,
    percent,
    percent_change,
    signed_percent,
)

NO_NUMBERS = [None, math.nan, math.inf, -math.inf, np.float64("nan"), "abc", True, [1.0]]


@pytest.mark.parametrize("x", NO_NUMBERS, ids=repr)
def test_anything_that_is_no_finite_number_is_the_one_blank(x):
    assert BLANK == "n/a"
    assert finite_value(x) is None
    assert number(x) == signed_percent(x) == percent(x) == formatted(x, ".2f") == BLANK
    assert percent_change(x, 1.0) == percent_change(1.0, x) == BLANK


@pytest.mark.parametrize(
    "x, digits, text",
    [
        (0.012345, 3, "0.0123"),
        (12345.6, 3, "1.23e+04"),
        (2.0, 3, "2"),
        (-0.5, 2, "-0.5"),
        (np.float32(1.5), 4, "1.5"),
        (np.int64(7), 3, "7"),
        (0.0, 4, "0"),
    ],
)
def test_number_keeps_significant_digits(x, digits, text):
    assert number(x, digits) == text


@pytest.mark.parametrize(
    "fraction, text", [(0.123, "+12 %"), (-0.656, "-66 %"), (0.0, "+0 %"), (2, "+200 %")]
)
def test_signed_percent_is_a_whole_signed_percent(fraction, text):
    assert signed_percent(fraction) == text


def test_percent_change_is_relative_to_the_size_of_the_old_value():
    assert percent_change(1.0, 1.5) == "+50 %"
    assert percent_change(-2.0, -1.0) == "+50 %"  # up by half of |old|
    assert percent_change(4.0, 1.0) == "-75 %"
    assert percent_change(0.0, 1.0) == BLANK  # no change relative to nothing


def test_percent_and_formatted_take_the_decimals_they_are_given():
    assert percent(0.70934) == "70.9 %"
    assert percent(0.70934, 0) == "71 %"
    assert formatted(3.14159, ".2f") == "3.14"
    assert formatted(1.5e-17, ".1e") == "1.5e-17"
    assert formatted("0.25", ".1%") == "25.0%"  # numeric text is a number
