"""A bounded outbox: the pipeline hands a message over and returns at once; one sender thread delivers.

``put`` never blocks and never raises. When the outbox is full (the peer is slower than the frames, or away),
the oldest message waiting is dropped to make room and counted: the newest results are the ones a consumer wants.
``send`` runs on the sender thread only; if it raises, the message is counted as failed and the sender goes on
with the next one (an output that must retry does so inside ``send`` or in its client library).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("edgeseg")

DEFAULT_CAPACITY = 256  # messages waiting; at 30 frames/s and a few topics per frame: a few seconds' worth


class Outbox(Generic[T]):
    """``capacity`` messages at most, delivered in order by ``send`` on a daemon thread named ``name``."""

    def __init__(self, send: Callable[[T], None], *, capacity: int = DEFAULT_CAPACITY, name: str = "outbox") -> None:
        if capacity < 1:
            raise ValueError(f"an outbox holds at least one message, got capacity {capacity}")
        self.capacity, self.name = capacity, name
        self._send = send
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self.put_count = 0  # messages handed over
        self.sent = 0  # delivered by send() without an error
        self.dropped = 0  # pushed out by newer ones while the outbox was full
        self.failed = 0  # send() raised
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, message: T) -> None:
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) >= self.capacity:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(message)
            self.put_count += 1
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                message = self._queue.popleft()
                self._busy = True
            try:
                self._send(message)
                ok = True
            except Exception as exc:  # a sender that fails one message does not stop the others
                ok = False
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._busy = False
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                    if self.last_error != error:
                        log.warning("%s: %s", self.name, error)
                    self.last_error = error
                self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every message handed over so far to be sent; True when none is left."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what is waiting for up to ``timeout_s``, then stop; what is left is counted as dropped."""
        self.flush(timeout_s)
        with self._cond:
            self._closing = True
            self.dropped += len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join(timeout=max(timeout_s, 0.1))
