"""Work started now and waited for later, where a round trip can go on beside other work."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def in_background(func: Callable[..., T], *args: Any) -> Future[T]:
    """``func(*args)`` on a thread of its own; its result, or its exception, from the Future's ``result()``."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(func, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends when func returns; nothing else will be submitted
