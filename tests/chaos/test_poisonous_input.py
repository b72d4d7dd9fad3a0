"""Chaos: poisonous input (issue 16, suite 4). Each poison gets a clear error naming the
resource, and everything else (other resources, types, zones) keeps syncing, with no
reconnect loop and no crash:

- a 20 MB body at the API: 413; a 20 MB resource already in the global's store (written by an
  older version, or restored): not synced, named with "max message size" per resource;
- a resource every zone refuses (version skew: the global holds what the zones' validators
  refuse): NACKed, named with its reason;
- a resource of zone-1 the global refuses (a Dataplane on 0.0.0.0 in zone-1's store): named,
  with its reason, in zone-1's ZoneInsight at the global;
- the over-long service name: a 400 at the zone naming the field.

Not here yet: a zone whose store cannot be written (root writes through read-only modes, and
`chattr +i` on the open SQLite file did not make the zone's writes fail).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, ORIGIN_ZONE, Meta, Resource
from tests.integration.federation_support import (
    Cluster,
    dataplane,
    eventually,
    mt_path,
    timeout_policy,
)
from tests.integration.test_federation_faults import policy_resource, write_store
from tests.support import Procs

pytestmark = pytest.mark.integration

BIG = 20 * 1024 * 1024


def zone_dataplane(name: str, address: str, zone: str = "zone-1") -> Resource:
    spec = dataplane(name)
    spec["networking"]["address"] = address
    labels = {LABEL_ORIGIN: ORIGIN_ZONE, LABEL_ZONE: zone, "kuma.io/display-name": name}
    return Resource("Dataplane", Meta(name, "default", labels), {"networking": spec["networking"]})


def sent_stat(cluster: Cluster, zone: str, type_name: str) -> dict[str, Any]:
    return dict(cluster.zone_state(zone)["subscriptions"][-1]["status"]["stat"][type_name])


def received_stat(cluster: Cluster, zone: str, type_name: str) -> dict[str, Any]:
    status = cluster.zone_state(zone)["subscriptions"][-1]["status"]
    return dict(status["received"]["stat"][type_name])


def test_poison_is_named_and_the_rest_keeps_syncing(procs: Procs, tmp_path: Path) -> None:
    cluster = Cluster.create(procs, tmp_path)
    cluster.start()
    cluster.wait_online()
    g, z1, z2 = cluster.glob, cluster.zones["zone-1"], cluster.zones["zone-2"]
    for node in cluster.nodes():
        cluster.stop(node)
    big = Resource(
        "Secret",
        Meta("huge", "default", {LABEL_ORIGIN: "global"}),
        {"data": base64.b64encode(b"x" * BIG).decode()},
    )
    write_store(
        g.data_dir,
        [policy_resource("a-good", "10s"), policy_resource("b-bad", "banana"), big],
    )
    write_store(
        z1.data_dir,
        [zone_dataplane("dp-ok", "127.0.0.1"), zone_dataplane("dp-any", "0.0.0.0")],
    )
    cluster.start()
    cluster.wait_online()
    sessions = {z.name: z.http.get("/_kds")["sessions"] for z in (z1, z2)}

    # At the edge: a 20 MB body and the long service name are refused, naming what is wrong.
    status, body = g.http.call("PUT", "/meshes/default/secrets/s2", {"data": "x" * BIG})
    assert status == 413 and "larger than" in body["detail"], (status, body)
    status, body = z1.http.call(
        "PUT", "/meshes/default/dataplanes/long", dataplane("long", service="s" * 300)
    )
    assert status == 400 and "kuma.io/service" in body["invalid_parameters"][0]["field"]

    for zone in (z1, z2):
        eventually(
            lambda zone=zone: (
                {p["name"] for p in zone.http.items("/meshes/default/meshtimeouts")} == {"a-good"}
            ),
            what=f"{zone.name}: the good policy, not the bad one",
        )
        mt = eventually(
            lambda zone=zone: sent_stat(cluster, zone.name, "MeshTimeout")["rejected"] or None,
            what=f"{zone.name} NACK named",
        )
        assert "idleTimeout" in mt["'b-bad' in mesh 'default'"], mt
        secret = eventually(
            lambda zone=zone: sent_stat(cluster, zone.name, "Secret")["rejected"] or None,
            what="the huge secret named",
        )
        assert "max message size" in secret["'huge' in mesh 'default'"], secret
        assert zone.http.call("GET", "/meshes/default/secrets/huge")[0] == 404
    # zone-1's Dataplane on 0.0.0.0: refused by the global, with its reason, per resource.
    dp = eventually(
        lambda: received_stat(cluster, "zone-1", "Dataplane")["rejected"] or None,
        what="the global names zone-1's refused Dataplane",
    )
    [(key, reason)] = dp.items()
    assert "dp-any" in key and "0.0.0.0" in reason, dp
    eventually(
        lambda: g.http.get("/meshes/default/dataplanes")["total"] == 1, what="dp-ok at the global"
    )

    # Everything else keeps flowing, without a reconnect, and every process is up.
    g.http.put(mt_path("later"), timeout_policy("later"))
    z1.http.put("/meshes/default/dataplanes/dp-later", dataplane("dp-later"))
    for zone in (z1, z2):
        eventually(
            lambda zone=zone: zone.http.call("GET", mt_path("later"))[0] == 200, what="later"
        )
    eventually(
        lambda: g.http.get("/meshes/default/dataplanes")["total"] == 2, what="dp-later at global"
    )
    assert {z.name: z.http.get("/_kds")["sessions"] for z in (z1, z2)} == sessions
    assert all(node.alive() for node in cluster.nodes())
