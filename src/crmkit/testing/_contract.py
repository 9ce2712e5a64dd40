"""How a contract check fails: with a message that names the contract of the port."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["_Caught", "_c", "_raises"]


def _c(contract: str) -> str:
    """The message of a failed check: the contract of the port that the store broke."""
    return f"contract: {contract}"


class _Caught:
    """What :func:`_raises` caught."""

    value: Any = None


@contextmanager
def _raises(kind: type[Exception], contract: str) -> Iterator[_Caught]:
    """Like ``pytest.raises``, but a failure names the contract (and any other error)."""
    caught = _Caught()
    try:
        yield caught
    except kind as error:
        caught.value = error
        return
    except Exception as error:
        pytest.fail(
            f"{_c(contract)}: expected {kind.__name__}, got {type(error).__name__}: {error}"
        )
    pytest.fail(f"{_c(contract)}: expected {kind.__name__}, nothing was raised")
