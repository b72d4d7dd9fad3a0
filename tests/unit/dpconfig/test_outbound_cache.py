"""The memo of outbound policies answers what the functions it memoises answer, on random
sequences of policy changes and dataplanes (issue 19)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.dpconfig.outbound_cache import OutboundMemo
from meshfed.dpconfig.policies import OUTBOUND_TYPES, load_balancing_conf, outbound_policies
from meshfed.policy.rules import match
from meshfed.policy.targetref import service_labels, view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, subset, svc, to

SERVICES = ("a", "b", "c")
DEFAULTS: dict[str, list[dict[str, Any]]] = {
    "MeshTimeout": [
        {"connectionTimeout": "2s"},
        {"idleTimeout": "1m", "http": {"requestTimeout": "3s"}},
    ],
    "MeshRetry": [{"tcp": {"maxConnectAttempt": 3}}, {"http": {"numRetries": 2}}],
    "MeshHealthCheck": [{"interval": "1s", "http": {}}, {"tcp": {}}],
    "MeshCircuitBreaker": [{"connectionLimits": {"maxConnections": 5}}],
    "MeshLoadBalancingStrategy": [
        {"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 4}}},
        {"loadBalancer": {"type": "RoundRobin"}},
    ],
}
TARGETS = st.sampled_from(
    [MESH_REF, svc("a"), svc("b"), subset({"kuma.io/service": "c", "version": "v2"})]
)
TO_REFS = st.sampled_from([MESH_REF, svc("a"), svc("b"), svc("c")])


@st.composite
def put(draw: st.DrawFn) -> Resource:
    type_ = draw(st.sampled_from(OUTBOUND_TYPES))
    name = f"{type_.lower()}-{draw(st.integers(0, 2))}"
    default = draw(st.sampled_from(DEFAULTS[type_]))
    return policy(type_, name, draw(TARGETS), to=[to(draw(TO_REFS), default)])


STEP = st.one_of(
    put().map(lambda p: ("put", p)),
    st.tuples(st.just("delete"), st.sampled_from(OUTBOUND_TYPES), st.integers(0, 2)),
    st.tuples(
        st.just("build"),
        st.sampled_from(SERVICES),
        st.sampled_from(["v1", "v2"]),
        st.lists(st.sampled_from(["zone-1", "zone-2"]), max_size=2),
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=30), st.integers(1, 6))
def test_memo_answers_what_the_functions_answer(steps: list[Any], size: int) -> None:
    memo = OutboundMemo(max_entries=size)  # small: eviction happens too
    store: dict[tuple[str, str], Resource] = {}
    for step in steps:
        if step[0] == "put":
            store[(step[1].type, step[1].name)] = step[1]
        elif step[0] == "delete":
            store.pop((step[1], f"{step[1].lower()}-{step[2]}"), None)
        else:
            _, service, version, zones = step
            dp = dataplane("dp", inbound(service, 8080, tags={"version": version}))
            view = view_of(dp, "zone-1")
            by_type: dict[str, list[Resource]] = {}
            for p in store.values():
                by_type.setdefault(p.type, []).append(p)
            matched = {t: match(by_type.get(t, []), view) for t in OUTBOUND_TYPES}
            for callee in SERVICES:
                labels = service_labels("default", callee, zones)
                for _ in range(2):  # the second from the memo
                    assert memo.outbound_policies(matched, callee, labels) == outbound_policies(
                        matched, callee, labels
                    )
                    assert memo.load_balancing_conf(matched, callee, labels) == load_balancing_conf(
                        matched, callee, labels
                    )


def test_a_new_sidecar_of_a_known_service_is_answered_from_the_memo() -> None:
    memo = OutboundMemo()
    timeout = policy("MeshTimeout", "t", MESH_REF, to=[to(MESH_REF, DEFAULTS["MeshTimeout"][0])])

    def ask(dp_name: str, p: Resource) -> float:
        view = view_of(dataplane(dp_name, inbound("a", 8080)), "zone-1")
        matched = {"MeshTimeout": match([p], view)}
        return memo.outbound_policies(matched, "b").connect_timeout

    assert (ask("dp-1", timeout), ask("dp-2", timeout)) == (2.0, 2.0)
    assert (memo.misses, memo.hits) == (1, 1)
    changed = policy("MeshTimeout", "t", MESH_REF, to=[to(MESH_REF, {"connectionTimeout": "7s"})])
    assert ask("dp-3", changed) == 7.0  # a changed policy is a new object: a new key
    assert memo.misses == 2
