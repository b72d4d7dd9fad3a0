"""Random interleavings of changes, message delivery, drops, restarts and NACKs converge.

Whatever happens in between, once the changes stop and the link settles, the receiver holds
exactly what the sender wants (compared by digest), apart from resources the receiver rejects;
and after a final reconnect with a receiver that accepts them, those arrive too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.kds.messages import to_wire, upsert_size
from meshfed.kds.receiver import Receiver
from meshfed.kds.sender import Sender
from meshfed.resources.model import Key, Resource
from tests.unit.kds.harness import Link, accept_all, res

TYPES = ["MeshTrafficPermission", "MeshTimeout"]
NAMES = ["a", "b", "c", "d", "e"]
# Room for about three resources per response, so responses are split too.
LIMIT = upsert_size(to_wire(res(TYPES[0], "a", n=10**6, bad=False, pad="x" * 40))) * 3 + 60

put = st.tuples(
    st.just("put"),
    st.sampled_from(TYPES),
    st.sampled_from(NAMES),
    st.integers(0, 3),
    st.booleans() | st.just(False),  # bad: the receiver rejects it
)
delete = st.tuples(st.just("delete"), st.sampled_from(TYPES), st.sampled_from(NAMES))
simple = st.sampled_from(
    [
        ("produce",),
        ("down",),
        ("up",),
        ("drop",),
        ("restart_receiver",),
        ("restart_sender",),
    ]
)
ops = st.lists(st.one_of(put, delete, simple, simple), max_size=120)


def _reject_bad(r: Resource) -> str | None:
    return "bad resource" if r.spec.get("bad") else None


def _good_digest(source: dict[tuple[str, Key], Resource]) -> dict[tuple[str, Key], str]:
    return {k: r.content_hash() for k, r in source.items() if not r.spec.get("bad")}


def _new_sender(source: dict[tuple[str, Key], Resource]) -> Sender:
    sender = Sender(TYPES, max_message_size=LIMIT)
    for t in TYPES:
        sender.replace_all(t, [to_wire(r) for (rt, _k), r in source.items() if rt == t])
    return sender


def _run(operations: list[tuple[Any, ...]]) -> None:
    source: dict[tuple[str, Key], Resource] = {}
    link = Link(_new_sender(source), Receiver(TYPES), _reject_bad)
    link.connect()
    for op in operations:
        kind = op[0]
        if kind == "put":
            _, t, name, n, bad = op
            r = res(t, name, n=n, bad=bad, pad="x" * 40)
            source[(t, Key("default", name))] = r
            link.put(r)
        elif kind == "delete":
            _, t, name = op
            source.pop((t, Key("default", name)), None)
            link.delete(t, name)
        elif kind == "produce":
            link.produce()
        elif kind == "down" and link.down:
            link.deliver_down()
        elif kind == "up" and link.up:
            link.deliver_up()
        elif kind == "drop":
            link.drop()
            link.connect()
        elif kind == "restart_receiver":
            held: dict[str, dict[Key, str]] = {}
            for (t, key), r in link.store.items():
                held.setdefault(t, {})[key] = r.content_hash()
            link.receiver = Receiver(TYPES, held=held)
            link.drop()
            link.connect()
        elif kind == "restart_sender":
            link.sender = _new_sender(source)
            link.drop()
            link.connect()
        # Invariant at every step: nothing the receiver rejects is ever stored.
        assert not any(r.spec.get("bad") for r in link.store.values())

    link.run()
    stored = link.receiver_digest()
    good = _good_digest(source)
    # Every acceptable resource arrived in its newest version, nothing deleted remains, and
    # a rejected one is either absent or an older accepted version.
    assert {k: v for k, v in stored.items() if k in good} == good
    assert set(stored) <= set(source)
    # A receiver that accepts everything, on a new stream, gets the rejected ones too.
    link.validate = accept_all
    link.drop()
    link.connect()
    link.run()
    assert link.receiver_digest() == {k: r.content_hash() for k, r in source.items()}
    assert link.receiver_digest() == link.sender_digest()


@settings(max_examples=400, deadline=None)
@given(ops)
def test_random_interleavings_converge(operations: list[tuple[Any, ...]]) -> None:
    _run(operations)


def test_a_long_fixed_scenario_converges() -> None:
    """A deterministic companion, so a failure here does not depend on hypothesis' search."""
    scenario: list[tuple[Any, ...]] = []
    for i in range(300):
        t = TYPES[i % 2]
        name = NAMES[i % len(NAMES)]
        scenario.append(("put", t, name, i % 4, i % 7 == 0))
        scenario.append(("produce",) if i % 3 else ("down",))
        if i % 11 == 0:
            scenario.append(("delete", t, NAMES[(i + 1) % len(NAMES)]))
        if i % 13 == 0:
            scenario.append(("up",))
        if i % 29 == 0:
            scenario.append(("drop",))
        if i % 41 == 0:
            scenario.append(("restart_sender",))
        if i % 53 == 0:
            scenario.append(("restart_receiver",))
    _run(scenario)
