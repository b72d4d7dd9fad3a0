"""`meshctl generate dataplane-token` against an in-process API (localhost is admin there)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from meshctl.commands.dataplane_token import parse_tags
from meshctl.errors import CliError
from meshctl.main import run
from meshfed.auth import keyring
from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import DataplaneClaims, TokenKind, verify
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.types import default_registry
from tests.unit.api.conftest import Api, start_api


def test_parse_tags() -> None:
    assert parse_tags(["kuma.io/service=web,web-2", "version=v1", "kuma.io/service=web,x"]) == {
        "kuma.io/service": ["web", "web-2", "x"],
        "version": ["v1"],
    }
    for bad in (["version=v1"], ["kuma.io/service"], ["kuma.io/service="], ["=web"]):
        with pytest.raises(CliError):
            parse_tags(bad)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    a, client = await start_api(localhost_is_admin=True)
    await a.store.create(
        resource_from_dict({"type": "Mesh", "name": "default"}, default_registry())
    )
    await ensure_signing_key(a.store, TokenKind.DATAPLANE, "default")
    yield a
    await client.close()
    await a.store.close()


async def meshctl(api: Api, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    url = str(api.client.make_url("/"))
    code = await asyncio.to_thread(
        run, [*argv, "--api", url], stdin=io.StringIO(), stdout=out, stderr=err, environ={}
    )
    return code, out.getvalue(), err.getvalue()


async def test_generate_prints_a_token_for_the_given_tags(api: Api) -> None:
    code, out, err = await meshctl(
        api,
        "generate",
        "dataplane-token",
        "--tag",
        "kuma.io/service=web,web-admin",
        "--name",
        "web-1",
        "--valid-for",
        "1h",
    )
    assert code == 0, err
    secrets = (await api.store.list("Secret", mesh="default")).items
    trusted = keyring.trusted_keys(TokenKind.DATAPLANE, secrets, "default")
    verified = verify(out.strip(), TokenKind.DATAPLANE, trusted)
    assert verified.claims == DataplaneClaims(
        "default", {"kuma.io/service": ("web", "web-admin")}, "web-1"
    )


async def test_generate_shows_the_servers_refusal(api: Api) -> None:
    code, out, err = await meshctl(
        api,
        "generate",
        "dataplane-token",
        "--mesh",
        "nope",
        "--tag",
        "kuma.io/service=web",
        "--valid-for",
        "1h",
    )
    assert code != 0 and out == "" and "nope" in err
    code, _, err = await meshctl(
        api, "generate", "dataplane-token", "--tag", "kuma.io/service=web", "--valid-for", "x"
    )
    assert code != 0 and "validFor" in err
    code, _, err = await meshctl(api, "generate", "dataplane-token", "--valid-for", "1h")
    assert code != 0 and "--tag kuma.io/service=SERVICE" in err
