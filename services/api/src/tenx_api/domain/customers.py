"""What a customer may change in their profile (the email belongs to auth)."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Line = Annotated[str, Field(min_length=1, max_length=200)]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    line1: Line
    line2: Annotated[str, Field(max_length=200)] = ""
    city: Line
    postal_code: Annotated[str, Field(min_length=1, max_length=20)]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"minProperties": 1})

    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    shipping_address: Address | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "ProfileUpdate":
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        return self
