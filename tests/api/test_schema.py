"""The committed SDL and operations stay in step with the schema code."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    parse,
    specified_scalar_types,
    validate,
)

from server.api.schema import schema

ROOT = Path(__file__).resolve().parents[2]
SDL = ROOT / "graphql" / "schema.graphql"
OPERATIONS = sorted((ROOT / "graphql" / "operations").glob("*.graphql"))
CONTRACT_OPERATIONS = {
    "Workspace",
    "Customers",
    "Events",
    "Funnel",
    "Timeseries",
    "TrackLead",
    "TrackSale",
    "LiveEvents",
}


def test_committed_sdl_equals_the_schema_run_make_schema_if_not() -> None:
    assert SDL.read_text() == str(schema) + "\n"


def test_no_python_in_the_graphql_folder() -> None:
    assert not list((ROOT / "graphql").rglob("*.py"))


def test_every_type_field_argument_and_enum_value_has_a_description() -> None:
    missing: list[str] = []
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__") or name in specified_scalar_types:
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLEnumType):
            missing.extend(
                f"{name}.{value_name}"
                for value_name, value in graphql_type.values.items()
                if not value.description
            )
        if isinstance(
            graphql_type,
            GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType,
        ):
            for field_name, field in graphql_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")

    assert missing == []


def test_the_contract_operations_are_shipped() -> None:
    assert {path.stem for path in OPERATIONS} >= CONTRACT_OPERATIONS


@pytest.mark.parametrize("path", OPERATIONS, ids=lambda path: path.name)
def test_operation_file_validates_against_the_schema(path: Path) -> None:
    document = parse(path.read_text())

    errors = validate(schema._schema, document)

    assert errors == []
    names = [d.name.value for d in document.definitions if hasattr(d, "operation")]
    assert path.stem in names
