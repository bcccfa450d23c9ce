"""Argument checks shared by the builders.

The builders check *types and ranges* eagerly, so that a mistake raises where
the plugin author made it and the value can always be handed to the component
model (a Python ``int`` that does not fit a WIT ``u32`` would otherwise trap
inside the bindings with an obscure message). They do not check *meaning*
(names, cron expressions, paths, JSON): the host does that at upload and
rejects the component with a readable message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Iterable, List, Union

#: A length of time: a ``timedelta``, or a number of seconds.
Seconds = Union[int, float, timedelta]

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
S32_MIN, S32_MAX = -(2**31), 2**31 - 1


def text(value: object, what: str) -> str:
    """``value`` if it is a ``str``; otherwise ``TypeError``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def texts(values: Iterable[str], what: str) -> List[str]:
    """A list of strings from an iterable of strings (a bare ``str`` is refused:
    it would be split into characters)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what} must be a list of str, not a single {type(values).__name__}")
    return [text(value, what) for value in values]


def flag(value: object, what: str) -> bool:
    """``value`` if it is a ``bool``; otherwise ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, not {type(value).__name__}")
    return value


def integer(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) within ``low..=high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, not {value}")
    return value


def millis(value: Seconds, what: str) -> int:
    """Whole milliseconds (a WIT ``u64``) of a ``timedelta`` or of seconds."""
    if isinstance(value, timedelta):
        ms = value // timedelta(milliseconds=1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = round(value * 1000)
    else:
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not {type(value).__name__}")
    return integer(ms, f"{what} (in milliseconds)", 0, U64_MAX)


def whole_seconds(value: Seconds, what: str) -> int:
    """Whole seconds (a WIT ``u32``) of a ``timedelta`` or of seconds."""
    return integer(millis(value, what) // 1000, f"{what} (in seconds)", 0, U32_MAX)
