"""The bounded outbox every network output hands its messages to (outputs/outbox.py): delivered in order, never
more than ``capacity`` waiting, the oldest dropped and counted, a failing send counted and passed over, close
bounded even when the peer hangs. A sender that blocks is held on an Event the test controls, so "put never
blocks" is checked by a put that returns while the sender is stuck, never by a clock."""

from __future__ import annotations

import threading

import pytest

from edgeseg.outputs.outbox import Outbox

pytestmark = pytest.mark.timeout(30)


class HeldSender:
    """A ``send`` that records each message and, while ``held``, blocks inside ``send`` (a peer that does not
    answer); ``started`` is set once it is inside its first ``send``."""

    def __init__(self, held: bool = False) -> None:
        self.got: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()

    def __call__(self, message: int) -> None:
        self.started.set()
        assert self.release.wait(20), "the test never released the sender"
        self.got.append(message)


def put_all(outbox: Outbox, messages: range) -> None:
    """Put every message from another thread and fail (not hang) when a put blocks."""
    worker = threading.Thread(target=lambda: [outbox.put(m) for m in messages], daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "Outbox.put blocked while the sender was stuck"


def test_messages_are_delivered_in_order() -> None:
    sender = HeldSender()
    box = Outbox(sender, capacity=500)
    for m in range(300):
        box.put(m)
    assert box.flush(10)
    assert sender.got == list(range(300))
    assert (box.put_count, box.sent, box.dropped, box.failed) == (300, 300, 0, 0)
    box.close()


@pytest.mark.parametrize("extra", [0, 1, 37])
def test_a_stuck_sender_never_blocks_put_and_the_oldest_are_dropped(extra: int) -> None:
    capacity = 8
    sender = HeldSender(held=True)
    box = Outbox(sender, capacity=capacity)
    box.put(-1)
    assert sender.started.wait(5)  # the sender holds message -1 inside send(): the queue is empty again
    put_all(box, range(capacity + extra))
    assert len(box) == capacity  # the bound, reached exactly
    assert box.dropped == extra
    sender.release.set()
    assert box.flush(10)
    assert sender.got == [-1, *range(extra, capacity + extra)]  # the newest kept, in order
    assert (box.put_count, box.sent, box.dropped) == (1 + capacity + extra, 1 + capacity, extra)
    box.close()


def test_a_failing_send_is_counted_and_the_others_go_on() -> None:
    got = []

    def send(message: int) -> None:
        if message % 3 == 0:
            raise ConnectionError(f"peer refused {message}")
        got.append(message)

    box = Outbox(send, capacity=50)
    for m in range(10):
        box.put(m)
    assert box.flush(10)
    assert got == [1, 2, 4, 5, 7, 8]
    assert (box.sent, box.failed, box.dropped) == (6, 4, 0)
    assert box.last_error == "ConnectionError: peer refused 9"
    box.close()


def test_close_is_bounded_by_its_timeout_and_counts_what_was_left() -> None:
    sender = HeldSender(held=True)
    box = Outbox(sender, capacity=10)
    box.put(0)
    assert sender.started.wait(5)
    put_all(box, range(1, 6))
    closer = threading.Thread(target=box.close, kwargs={"timeout_s": 0.2}, daemon=True)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() waited past its timeout for a stuck sender"
    assert box.dropped == 5  # the five still waiting; message 0 is the sender's
    box.put(99)  # after close: counted, never delivered
    assert box.dropped == 6 and len(box) == 0
    sender.release.set()
    assert sender.got in ([], [0])


def test_close_delivers_what_is_waiting_when_the_peer_answers() -> None:
    sender = HeldSender()
    box = Outbox(sender, capacity=100)
    for m in range(40):
        box.put(m)
    box.close(timeout_s=10)
    assert sender.got == list(range(40)) and box.dropped == 0


def test_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one message, got capacity 0"):
        Outbox(lambda m: None, capacity=0)
