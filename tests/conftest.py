from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support import Procs

# Hypothesis's per-example deadline (200 ms) measures the machine's load, not the code: a
# CI run beside other work failed test_sni's round trip on it while the property held.
# Properties are checked without it; the benchmarks measure time.
settings.register_profile("meshfed", deadline=None)
settings.load_profile("meshfed")


@pytest.fixture(autouse=True, scope="session")
def _meshctl_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every meshctl a test runs (in-process or as a child) uses a config file of the test
    session, never the user's ~/.meshfed/meshctl.yaml (`meshctl up` writes to it)."""
    saved = os.environ.get("MESHCTL_CONFIG")
    os.environ["MESHCTL_CONFIG"] = str(tmp_path_factory.mktemp("meshctl") / "meshctl.yaml")
    yield
    if saved is None:
        os.environ.pop("MESHCTL_CONFIG", None)
    else:
        os.environ["MESHCTL_CONFIG"] = saved


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    """Real processes for this test; all stopped by PID afterwards, logs printed on failure."""
    p = Procs(tmp_path)
    yield p
    p.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(p.dump_logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# Fixtures that start a real etcd (tests/unit/store/conftest.py, tests/unit/ha/conftest.py).
ETCD_FIXTURES = frozenset({"etcd_server", "etcd_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a real etcd through a fixture, however indirectly, is marked `etcd`,
    so the fast unit run (`make unit`: -m "not etcd") leaves it out and a new one cannot be
    forgotten. Tests that start etcd themselves, and the etcd backend of the store
    conformance suite, carry the mark explicitly."""
    for item in items:
        if ETCD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.etcd)
