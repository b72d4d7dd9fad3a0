"""Schemathesis against the /openapi.json of a real global-cp and a real zone-cp (issue 12).

Every operation each control plane documents is called with generated input, valid and invalid
(a bounded number of examples, derandomized: the same requests every run), as the admin; every
response must be a non-5xx answer the document declares (status, content type, body schema,
headers), and an admin operation must refuse a request without a token (schemathesis'
`ignored_auth` probes). A second pass calls every operation anonymously, with an invalid token
and as a user who is not an admin: an admin operation must refuse all three (401, 401, 403), a
public one the invalid token; each answer is checked against the document too.

`GET /_watch` is left out of generation: it streams until the client leaves, so a response
never ends (its 400 and stream are tested in tests/unit/api and tests/integration).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from meshfed.api.policy_views import policy_types
from meshfed.resources.types import default_registry
from tests.auth_support import bearer
from tests.integration.federation_support import Cluster, dataplane, timeout_policy
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

# Examples per operation, valid and invalid mixed. The "Not supported" paths share one handler
# (a 400 naming the type), so one example each is enough there. The policy types' five
# operations share the generic resource handlers too: MeshTimeout's get the full count, every
# other policy type a few (its own body model is still exercised; unit tests cover each model).
EXAMPLES = 8
EXAMPLES_UNSUPPORTED = 1
EXAMPLES_SHARED = 3
FULL_POLICY = "MeshTimeout"
SHARED_TAGS = frozenset(d.name for d in policy_types(default_registry())) - {FULL_POLICY}
STREAMING = frozenset({"watchStore"})
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
REFUSAL_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SETTINGS: dict[str, Any] = dict(
    derandomize=True,  # the same examples every run
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: every failure is reported as met
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One global and one zone, with one resource of a few types so that lists and gets
    return real bodies to check against the schemas."""
    root: Path = tmp_path_factory.mktemp("openapi")
    procs = Procs(root)
    try:
        c = Cluster.create(procs, root, zone_names=("zone-1",))
        c.start()
        c.wait_online()
        c.glob.http.put("/meshes/scratch", {"type": "Mesh", "name": "scratch"})
        c.glob.http.put("/meshes/default/meshtimeouts/seed", timeout_policy("seed"))
        c.zones["zone-1"].http.put("/meshes/default/dataplanes/seed-1", dataplane("seed-1"))
        # The same resources at every run: the zone's Dataplane has reached the global.
        wait_until(
            lambda: c.glob.http.get("/meshes/default/dataplanes")["total"] == 1,
            timeout=20,
            what="the Dataplane at the global",
        )
        yield c
    finally:
        procs.stop_all()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(cluster.procs.dump_logs())


# Seeded names that no generated write may touch: the mesh and zone the rest of the run uses.
PROTECTED = {"/meshes/{name}": {"default"}, "/zones/{name}": {"zone-1"}}
METHOD_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}


class Generator:
    """Strategies for one control plane: schemathesis' valid and invalid cases, plus valid
    cases aimed at what exists (the `default` mesh, stored names) and PUT bodies whose name
    and mesh match their URL, so that handlers get past the first check."""

    def __init__(self, base: str, session: requests.Session, headers: dict[str, str]) -> None:
        self.base = base
        self.session = session
        self.headers = headers
        self._names: dict[str, list[str]] = {}

    def stored_names(self, item_path: str) -> list[str]:
        """A few names stored under the collection of `item_path` (in the default mesh)."""
        collection = item_path.split("/{name}")[0].replace("{mesh}", "default")
        if collection not in self._names:
            resp = self.session.get(
                f"{self.base}{collection}?size=3", headers=self.headers, timeout=10
            )
            items = resp.json().get("items", []) if resp.status_code == 200 else []
            self._names[collection] = [item["name"] for item in items]
        return self._names[collection]

    def strategy(self, op: Any) -> st.SearchStrategy[Any]:
        positive, negative = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
        strategies = [op.as_strategy(positive), op.as_strategy(negative)]
        fixed: list[dict[str, str]] = []
        if "{mesh}" in op.path:
            fixed.append({"mesh": "default"})
        if "{name}" in op.path:
            protected = PROTECTED.get(op.path, set()) if op.method.upper() != "GET" else set()
            for name in self.stored_names(op.path):
                if name not in protected:
                    fixed.append(
                        {"mesh": "default", "name": name} if "{mesh}" in op.path else {"name": name}
                    )
        for params in fixed:
            strategies.append(op.as_strategy(positive, path_parameters=params).map(_align))
        if op.method.upper() == "PUT" and "{mesh}" not in op.path:
            strategies.append(op.as_strategy(positive).map(_align))
        if op.method.upper() == "POST":
            strategies.append(op.as_strategy(positive).map(_in_default_mesh))
        return st.one_of(strategies)


def _align(case: Any) -> Any:
    """A PUT body naming the resource (and mesh) of its URL, as clients send it."""
    if isinstance(case.body, dict) and case.method.upper() == "PUT":
        for key in ("name", "mesh"):
            if key in case.path_parameters:
                case.body[key] = case.path_parameters[key]
    return case


def _in_default_mesh(case: Any) -> Any:
    """A request body about the mesh that exists (e.g. a dataplane token for it)."""
    if isinstance(case.body, dict) and "mesh" in case.body:
        case.body["mesh"] = "default"
    return case


def conformance_failures(base: str, token: str) -> tuple[dict[tuple[str, str], str], int]:
    """(operation, failure title) -> report, and the number of requests made."""
    headers = bearer(token)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: METHOD_ORDER.get(op.method.upper(), 9))
    found: dict[tuple[str, str], str] = {}
    calls = 0
    with requests.Session() as session:
        gen = Generator(base, session, headers)
        for op in operations:
            if op.definition.raw.get("operationId") in STREAMING:
                continue
            tags = op.definition.raw.get("tags") or [""]
            if tags == ["Not supported"]:
                examples = EXAMPLES_UNSUPPORTED
            elif tags[0] in SHARED_TAGS:
                examples = EXAMPLES_SHARED
            else:
                examples = EXAMPLES

            @hypothesis.settings(max_examples=examples, **SETTINGS)
            @hypothesis.given(case=gen.strategy(op))
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                try:
                    case.call_and_validate(
                        base_url=base, session=session, headers=headers, checks=CHECKS, timeout=10
                    )
                except FailureGroup as group:
                    for failure in group.exceptions:
                        found.setdefault((case.operation.label, failure.title), str(group))

            run()
    return found, calls


def _report(found: dict[tuple[str, str], str]) -> str:
    return "\n".join(f"--- {op}: {title}\n{text}" for (op, title), text in sorted(found.items()))


@pytest.mark.timeout(300)
def test_global_and_zone_answer_as_their_openapi_documents_say(cluster: Cluster) -> None:
    token = cluster.admin_token()
    started = time.monotonic()
    found_global, calls_global = conformance_failures(cluster.glob.url, token)
    found_zone, calls_zone = conformance_failures(cluster.zones["zone-1"].url, token)
    elapsed = time.monotonic() - started
    print(f"{calls_global} + {calls_zone} generated requests in {elapsed:.1f}s")
    found = {("global " + k[0], k[1]): v for k, v in found_global.items()}
    found |= {("zone " + k[0], k[1]): v for k, v in found_zone.items()}
    assert not found, f"{len(found)} conformance failure(s):\n{_report(found)}"


def refusal_failures(base: str, tokens: dict[str, str | None]) -> list[str]:
    """Every operation called as each caller in `tokens` (None: anonymous). An admin operation
    must refuse all of them (401 without or with an invalid token, 403 for a user who is not
    an admin); a public one must refuse only an invalid token. Every answer must conform."""
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    problems: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            op = result.ok()
            admin = op.definition.raw["x-meshfed-access"] == "admin"
            params = {"mesh": "default", "name": "refused", "kind": "user", "file": "app.js"}
            path_parameters = {k: v for k, v in params.items() if "{" + k + "}" in op.path}
            body = {} if "requestBody" in op.definition.raw else NOT_SET
            media = "application/json" if body is not NOT_SET else None
            for caller, token in tokens.items():
                case = op.Case(path_parameters=path_parameters, body=body, media_type=media)
                headers = bearer(token) if token is not None else {}
                expected = {"anonymous": 401, "invalid": 401, "non-admin": 403}[caller]
                if not admin and caller != "invalid":
                    if op.definition.raw["operationId"] in STREAMING:
                        continue
                    expected = 0  # any conforming answer
                response = case.call(base_url=base, session=session, headers=headers, timeout=10)
                if expected and response.status_code != expected:
                    problems.append(
                        f"{op.label} as {caller}: {response.status_code}, not {expected}"
                    )
                try:
                    case.validate_response(response, checks=REFUSAL_CHECKS, headers=headers)
                except FailureGroup as group:
                    problems.append(f"{op.label} as {caller}: {group}")
    return problems


def test_every_admin_operation_refuses_anonymous_and_non_admin_callers(cluster: Cluster) -> None:
    issued = requests.post(
        f"{cluster.glob.url}/tokens/user",
        json={"name": "jane", "groups": ["team-a"], "validFor": "1h"},
        headers=bearer(cluster.admin_token()),
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    jane = issued.text.strip()
    # The zone verifies with the keys it got over KDS (the first test rotates them).
    zone = cluster.zones["zone-1"].url
    wait_until(
        lambda: requests.get(f"{zone}/meshes", headers=bearer(jane), timeout=5).status_code == 200,
        timeout=20,
        what="the zone accepting a token of the newest key",
    )
    tokens = {"anonymous": None, "invalid": "not-a-token", "non-admin": jane}
    problems = refusal_failures(cluster.glob.url, tokens)
    problems += refusal_failures(cluster.zones["zone-1"].url, tokens)
    assert not problems, "\n".join(problems)
