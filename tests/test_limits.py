"""Ranges of numeric options: checked where they are parsed, the same for YAML and the CLI."""

import math

import click
import pytest

from biounet.cli.parse import Number, OutOfRange, usage_message
from biounet.limits import check_number, cpu_count, host_memory_mib, max_workers


@pytest.mark.parametrize(
    "value,kwargs,message",
    [
        (-1, {"low": 0, "integer": True}, "seed must be at least 0, got -1"),
        (0, {"low": 0, "above": True}, "seed must be greater than 0, got 0"),
        (2**63, {"high": 2**63 - 1}, "seed must be at most 9223372036854775807, got"),
        (math.inf, {}, "seed must be a finite number, got inf"),
        (math.nan, {"low": 0}, "seed must be a finite number, got nan"),
        (True, {"integer": True}, "seed must be an integer, got True"),
        (1.5, {"integer": True}, "seed must be an integer, got 1.5"),
        ("3", {}, "seed must be a number, got '3'"),
    ],
)
def test_check_number_refuses(value, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_number("seed", value, **kwargs)


def test_check_number_accepts_the_bounds_themselves():
    check_number("x", 0, low=0, high=0, integer=True)
    check_number("x", 1.0, low=0, high=1)


def _convert(kind, text, *args, **kwargs):
    option = click.Option(["--opt"], type=Number(kind, *args, **kwargs))
    ctx = click.Context(click.Command("cmd", params=[option]), info_name="cmd")
    return option.type.convert(text, option, ctx)


def test_number_options_check_their_range_with_the_value_in_the_message():
    assert _convert(int, "4", 1, 8) == 4 and _convert(float, "0.5", 0, 1) == 0.5
    with pytest.raises(OutOfRange) as info:
        _convert(int, "100000", 1, lambda: 2, why="the CPU cores of this machine")
    assert usage_message(info.value) == (
        "--opt 100000: must be at most 2 (the CPU cores of this machine)"
    )
    with pytest.raises(OutOfRange) as info:
        _convert(float, "inf", 0, above=True)
    assert usage_message(info.value) == "--opt inf: must be a finite number"
    with pytest.raises(click.BadParameter) as info:
        _convert(int, "abc", 1)
    assert usage_message(info.value) == "--opt: 'abc' is not a valid integer (see cmd --help)"


def test_host_limits_are_positive():
    assert max_workers() == cpu_count() >= 1 and host_memory_mib() > 0
