"""Splitting apply input into documents, and variable substitution."""

from __future__ import annotations

import pytest

from meshctl.documents import parse_documents, parse_variables, substitute
from meshctl.errors import EXIT_USAGE, CliError

MULTI = """
type: Mesh
name: one
---
type: MeshTimeout
mesh: default
name: t1
creationTime: 2024-01-02T03:04:05Z
spec:
  targetRef: {kind: Mesh}
---
"""


def test_multi_document_yaml_skips_empty_documents_and_keeps_times_as_text() -> None:
    docs = parse_documents(MULTI, "f.yaml")
    assert [d.data["name"] for d in docs] == ["one", "t1"]
    assert [d.index for d in docs] == [1, 2]
    assert docs[1].data["creationTime"] == "2024-01-02T03:04:05Z"
    assert docs[1].where == "document 2 of f.yaml"


def test_json_object_list_and_saved_list_response() -> None:
    assert [d.data["name"] for d in parse_documents('{"type":"Mesh","name":"a"}', "-")] == ["a"]
    listed = parse_documents('[{"type":"Mesh","name":"a"},\n\t{"type":"Mesh","name":"b"}]', "-")
    assert [d.data["name"] for d in listed] == ["a", "b"]
    saved = parse_documents(
        '{"total": 1, "items": [{"type":"Mesh","name":"c"}], "next": null}', "-"
    )
    assert [d.data["name"] for d in saved] == ["c"]


def test_yaml_list_is_flattened_and_non_objects_are_kept_for_the_caller_to_reject() -> None:
    docs = parse_documents("- type: Mesh\n  name: a\n- 42\n", "x")
    assert [d.data for d in docs] == [{"type": "Mesh", "name": "a"}, 42]


def test_syntax_error_names_source_and_line() -> None:
    with pytest.raises(CliError) as err:
        parse_documents("type: Mesh\nname: [unclosed\n", "bad.yaml")
    assert err.value.message.startswith("bad.yaml: not valid YAML or JSON")
    assert "line 3" in err.value.message or "line 2" in err.value.message


def test_empty_input_has_no_documents() -> None:
    assert parse_documents("", "x") == []
    assert parse_documents("---\n---\n", "x") == []


def test_variables_are_substituted_and_missing_ones_are_an_error() -> None:
    variables = parse_variables(["mesh=prod", "url=http://a?b=c"])
    assert variables == {"mesh": "prod", "url": "http://a?b=c"}
    assert substitute("mesh: {{ mesh }}\nx: {{url}}", variables, "f") == (
        "mesh: prod\nx: http://a?b=c"
    )
    with pytest.raises(CliError) as err:
        substitute("mesh: {{ mesh }}\nname: {{ name }}", variables, "f")
    assert "name" in err.value.message
    assert err.value.details == ["pass -v name=VALUE"]


@pytest.mark.parametrize("bad", ["novalue", "=x", "a b=c"])
def test_bad_variable_syntax_is_a_usage_error(bad: str) -> None:
    with pytest.raises(CliError) as err:
        parse_variables([bad])
    assert err.value.exit_code == EXIT_USAGE
