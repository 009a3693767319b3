"""The auth service's refusals, each a problem with a stable code."""

from tenx_common.web import ProblemError


def email_taken() -> ProblemError:
    return ProblemError(status=409, code="email_taken", detail="This email is already registered.")


def invalid_credentials() -> ProblemError:
    # One answer for an unknown email and a wrong password.
    return ProblemError(
        status=401, code="invalid_credentials", detail="The email or password is wrong."
    )


def too_many_attempts(retry_after_s: int) -> ProblemError:
    return ProblemError(
        status=429,
        code="too_many_attempts",
        detail="Too many failed sign-in attempts. Try again later.",
        headers={"Retry-After": str(retry_after_s)},
    )


def invalid_refresh_token() -> ProblemError:
    return ProblemError(
        status=401, code="invalid_refresh_token", detail="The refresh token is not valid."
    )


def refresh_token_reused() -> ProblemError:
    return ProblemError(
        status=401,
        code="refresh_token_reused",
        detail="This refresh token was already used; every session of its login is revoked.",
    )


def invalid_one_time_token() -> ProblemError:
    return ProblemError(
        status=400, code="invalid_token", detail="The token is unknown, used or expired."
    )


def user_not_found() -> ProblemError:
    return ProblemError(status=404, code="not_found", detail="No such user.")
