"""The notifier acks each partition's alerts in offset order, whatever order they finish in
(Faust would otherwise commit past an unacked alert at the head of a partition)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.notify import InOrderAcks


@dataclass(frozen=True)
class Message:
    tp: str
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message
    log: list[tuple[str, int]]

    def ack(self) -> None:
        self.log.append((self.message.tp, self.message.offset))


def test_acks_wait_for_the_head_of_their_partition() -> None:
    log: list[tuple[str, int]] = []
    acks = InOrderAcks()
    events = [Event(Message(tp, n), log) for tp in ("a", "b") for n in range(3)]
    done = {(e.message.tp, e.message.offset): acks.track(e) for e in events}
    done["a", 1]()
    done["a", 2]()
    done["b", 0]()
    assert log == [("b", 0)]
    done["a", 0]()
    assert log == [("b", 0), ("a", 0), ("a", 1), ("a", 2)]
