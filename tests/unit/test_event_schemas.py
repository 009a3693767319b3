"""Event schemas: the committed files match the models, and a change to a
published version that could break a consumer is caught."""

import copy
from typing import Any

import pytest

from tenx_common.events.catalog_products import StockChanged
from tenx_common.events.orders_orders import OrderPlaced
from tenx_tools.event_schemas import check, event_types, incompatibilities, schema_of


def test_every_event_has_a_current_compatible_committed_schema() -> None:
    assert len(event_types()) >= 9
    assert check() == []


def changed(schema: dict[str, Any], change: Any) -> dict[str, Any]:
    new = copy.deepcopy(schema)
    change(new)
    return new


def rename(schema: dict[str, Any]) -> None:
    schema["properties"]["level"] = schema["properties"].pop("stock")
    schema["required"] = [f if f != "stock" else "level" for f in schema["required"]]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda s: s["properties"].pop("stock"), "'stock' was removed or renamed"),
        (rename, "'stock' was removed or renamed"),
        (lambda s: s["properties"]["stock"].update(type="string"), "'stock' changed its type"),
        (lambda s: s["required"].remove("stock"), "'stock' became optional"),
        (
            lambda s: (
                s["properties"].update(note={"type": "string"}),
                s["required"].append("note"),
            ),
            "new required field 'note'",
        ),
    ],
)
def test_a_breaking_change_is_named(change: Any, why: str) -> None:
    old = schema_of(StockChanged)
    problems = incompatibilities(old, changed(old, change))
    assert any(why in problem for problem in problems), problems


def test_an_optional_field_may_be_added() -> None:
    old = schema_of(StockChanged)
    new = changed(old, lambda s: s["properties"].update(note={"type": "string"}))
    assert incompatibilities(old, new) == []


def test_a_retyped_field_inside_a_nested_model_is_caught() -> None:
    old = schema_of(OrderPlaced)
    new = changed(
        old, lambda s: s["$defs"]["OrderLine"]["properties"]["quantity"].update(type="string")
    )
    assert incompatibilities(old, new) == ["required field 'items' changed its type"]
