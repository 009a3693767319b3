"""What clients ask the auth service to do."""

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class SignUp(Command):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    name: str = Field(min_length=1, max_length=100)


class LogIn(Command):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(Command):
    refresh_token: str = Field(min_length=1, max_length=200)


class VerifyEmail(Command):
    token: str = Field(min_length=1, max_length=200)


class RequestPasswordReset(Command):
    email: str = Field(min_length=1, max_length=254)


class ResetPassword(Command):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=1024)
