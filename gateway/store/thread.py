"""The store's one thread: every SQLite call runs on it, urgent work first.

Contract:
- ``submit(fn, *args, urgent=False)`` queues ``fn(*args)`` and returns a
  ``concurrent.futures.Future`` (``asyncio.wrap_future`` makes it awaitable). Work runs one
  call at a time, in submission order within its class; an urgent call (a transaction carrying
  alarms) runs before every normal call still waiting (telemetry inserts, sink selects and
  acks), never in the middle of one. So an alarm waits for at most the call in progress, not
  for the queue behind it.
- A call that has started always runs to its end; ``Future.cancel`` only withdraws one that
  has not started (the store never cancels: see ``gateway.store.outbox``, invariant 7).
- ``shutdown(wait=True)`` runs what is queued, then stops the thread and joins it. The thread
  is a daemon so a store that is never closed cannot hold the interpreter at exit; SQLite's
  journal makes a transaction cut short there the same as a killed process.
"""

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


class StoreThread:
    """One worker thread with an urgent and a normal queue."""

    def __init__(self, name: str = "store") -> None:
        self._urgent: deque[_Job] = deque()
        self._normal: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any, urgent: bool = False) -> "Future[T]":
        """Queue ``fn(*args)``; raises ``RuntimeError`` after ``shutdown``."""
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the store thread is shut down")
            (self._urgent if urgent else self._normal).append((future, fn, args))
            self._ready.notify()
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking work; the thread ends once the queues are empty."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._urgent and not self._normal and not self._closed:
                    self._ready.wait()
                if self._urgent:
                    future, fn, args = self._urgent.popleft()
                elif self._normal:
                    future, fn, args = self._normal.popleft()
                else:
                    return  # closed and drained
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001  # handed to the caller, as an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)
