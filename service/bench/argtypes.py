"""Argument types for ``chunkserve bench``: values that cannot give a measurement are refused at parse time."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def positive_int(raw: str) -> int:
    """An integer >= 1.

    Raises:
        argparse.ArgumentTypeError: not an integer, or below 1.
    """
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(raw: str) -> float:
    """A number > 0.

    Raises:
        argparse.ArgumentTypeError: not a number, or not above 0.
    """
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {raw!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {raw}")
    return value


def _checked_list(raw: str, check: Callable[[str], object], what: str) -> str:
    """``raw`` unchanged once every comma-separated part passes ``check`` (``what`` names the parts for the error).

    Raises:
        argparse.ArgumentTypeError: empty, or a part ``check`` refuses.
    """
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got nothing")
    for part in parts:
        check(part)
    return raw


def positive_int_list(raw: str) -> str:
    """Comma-separated integers, each >= 1 (kept as given: the scenarios split it themselves).

    Raises:
        argparse.ArgumentTypeError: empty, or a value that is not an integer >= 1.
    """
    return _checked_list(raw, positive_int, "whole numbers >= 1")


def positive_float_list(raw: str) -> str:
    """Comma-separated numbers, each > 0 (kept as given).

    Raises:
        argparse.ArgumentTypeError: empty, or a value that is not a number > 0.
    """
    return _checked_list(raw, positive_float, "numbers > 0")


class DefaultLevels(str):
    """A default list of levels, told apart from the same list given on the command line."""

    __slots__ = ()
