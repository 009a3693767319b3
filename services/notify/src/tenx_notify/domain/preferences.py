"""What a user sends to choose their channels."""

from pydantic import BaseModel, ConfigDict


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    email: bool
    in_app: bool
