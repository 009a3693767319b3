"""A product change names the fields it changes; null is refused (422), never
stored: every product field has a value."""

import json

import pytest
from pydantic import ValidationError

from tenx_api.domain.catalog import ProductUpdate


@pytest.mark.parametrize("field", sorted(ProductUpdate.model_fields))
def test_a_null_field_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="null is not a value"):
        ProductUpdate.model_validate({field: None})


def test_an_absent_field_is_unchanged() -> None:
    assert ProductUpdate.model_validate({"stock": 3}).model_dump(exclude_unset=True) == {"stock": 3}


def test_the_schema_offers_no_null() -> None:
    properties = ProductUpdate.model_json_schema()["properties"]
    assert all("anyOf" not in schema for schema in properties.values())
    assert '"type": "null"' not in json.dumps(properties)
