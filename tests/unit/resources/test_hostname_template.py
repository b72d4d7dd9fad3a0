"""HostnameGenerator templates: the forms Kuma's documentation uses, and nothing else."""

from __future__ import annotations

import pytest

from meshfed.resources.hostname_template import (
    Subject,
    TemplateError,
    hostname_or_none,
    parse_template,
    render,
)

REDIS = Subject("redis", "east", "default", {"team": "db", "k8s.kuma.io/service-name": "redis"})


@pytest.mark.parametrize(
    ("template", "hostname"),
    [
        ("{{ .DisplayName }}.svc.mesh.local", "redis.svc.mesh.local"),
        ("{{ .DisplayName }}.svc.{{ .Zone }}.mesh.local", "redis.svc.east.mesh.local"),
        ("{{ .DisplayName }}.mzsvc.mesh.local", "redis.mzsvc.mesh.local"),
        ('{{ label "team" }}.{{ .Mesh }}.local', "db.default.local"),
        ("{{ label 'k8s.kuma.io/service-name' }}.{{.Zone}}.x", "redis.east.x"),
        ("{{- .DisplayName -}}.a", "redis.a"),
    ],
)
def test_the_documented_forms_render(template: str, hostname: str) -> None:
    assert render(parse_template(template), REDIS) == hostname


def test_a_missing_value_gives_no_hostname() -> None:
    assert render(parse_template("{{ .DisplayName }}.{{ .Namespace }}.svc"), REDIS) is None
    assert render(parse_template('{{ label "nope" }}.svc'), REDIS) is None


@pytest.mark.parametrize(
    "template",
    ["{{ .Foo }}.x", '{{ printf "%s" .DisplayName }}', "{{ .DisplayName }.x", "a}}b"],
)
def test_other_actions_are_refused_by_name(template: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(template)


def test_a_result_that_is_not_a_hostname_is_dropped() -> None:
    assert render(parse_template("{{ .DisplayName }}_x.svc"), REDIS) is None
    assert hostname_or_none("Redis.SVC.mesh.local.") == "redis.svc.mesh.local"
    assert hostname_or_none("a" * 64 + ".x") is None
