"""An in-memory KDS "transport": a Sender and a Receiver joined by two message lists.

Each step moves one message, so tests choose the interleaving; `drop()` loses whatever is
in transit, as a broken gRPC stream would, and `connect()` re-subscribes as a new stream does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshfed.kds.messages import SyncRequest, SyncResponse, to_wire
from meshfed.kds.receiver import Receiver, Validate
from meshfed.kds.sender import Sender
from meshfed.resources.model import Key, Meta, Resource

StoreKey = tuple[str, Key]


def res(type_name: str, name: str, mesh: str = "default", **spec: object) -> Resource:
    return Resource(type=type_name, meta=Meta(name=name, mesh=mesh), spec=dict(spec))


def accept_all(_res: Resource) -> str | None:
    return None


@dataclass
class Link:
    sender: Sender
    receiver: Receiver
    validate: Validate = accept_all
    store: dict[StoreKey, Resource] = field(default_factory=dict)  # the receiver's side
    down: list[SyncResponse] = field(default_factory=list)  # sender -> receiver
    up: list[SyncRequest] = field(default_factory=list)  # receiver -> sender
    delivered: list[SyncResponse] = field(default_factory=list)  # every response applied
    replies: list[SyncRequest] = field(default_factory=list)  # every ACK/NACK sent

    # -- the source: what the sending side has ------------------------------------------------

    def put(self, resource: Resource) -> None:
        self.sender.upsert(resource.type, to_wire(resource))

    def delete(self, type_name: str, name: str, mesh: str = "default") -> None:
        self.sender.remove(type_name, Key(mesh, name))

    # -- the stream ---------------------------------------------------------------------------

    def connect(self) -> None:
        self.up.extend(self.receiver.subscribe_requests())

    def drop(self) -> None:
        self.down.clear()
        self.up.clear()
        self.sender.disconnect()

    def produce(self) -> int:
        """Lets the sender write whatever it may now; returns how many responses it wrote."""
        n = 0
        for type_name in self.sender.ready_types():
            resp = self.sender.next_response(type_name)
            if resp is not None:
                self.down.append(resp)
                n += 1
        return n

    def deliver_down(self) -> SyncRequest:
        resp = self.down.pop(0)
        changes, reply = self.receiver.handle_response(resp, self.validate)
        for r in changes.upserts:
            self.store[(r.type, Key(r.mesh, r.name))] = r
        for key in changes.removes:
            self.store.pop((changes.type, key), None)
        self.receiver.commit(changes)
        self.delivered.append(resp)
        self.replies.append(reply)
        self.up.append(reply)
        return reply

    def deliver_up(self) -> None:
        self.sender.handle_request(self.up.pop(0))

    def run(self, max_steps: int = 100_000) -> None:
        """Moves messages until nothing is in transit and the sender has nothing to say."""
        for _ in range(max_steps):
            if self.up:
                self.deliver_up()
            elif self.down:
                self.deliver_down()
            elif not self.produce():
                return
        raise AssertionError("the link did not settle: a send loop?")

    # -- observations -------------------------------------------------------------------------

    def sent_resources(self) -> int:
        return sum(len(r.resources) for r in self.delivered)

    def sent_removals(self) -> int:
        return sum(len(r.removed) for r in self.delivered)

    def receiver_digest(self) -> dict[StoreKey, str]:
        return {k: r.content_hash() for k, r in self.store.items()}

    def sender_digest(self) -> dict[StoreKey, str]:
        return {
            (t, key): w.version
            for t in self.sender.types
            for key, w in self.sender.desired(t).items()
        }


def new_link(
    types: list[str], *, max_message_size: int | None = None, validate: Validate = accept_all
) -> Link:
    sender = (
        Sender(types)
        if max_message_size is None
        else Sender(types, max_message_size=max_message_size)
    )
    for t in types:
        sender.replace_all(t, [])
    link = Link(sender, Receiver(types), validate)
    link.connect()
    return link
