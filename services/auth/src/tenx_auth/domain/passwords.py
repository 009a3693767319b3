"""Passwords: the policy a new one must meet, and Argon2id hashing.

A new password has 10 to 128 characters and a zxcvbn score of at least 3,
measured against the user's email and name too (the caller passes them).

Hashing follows OWASP's Argon2id parameters (m=19456 KiB, t=2, p=1). A hash
made with other parameters still verifies and is replaced at the next login.
An unknown account is checked against a decoy hash, so that it costs what a
wrong password costs.
"""

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 128
MIN_SCORE = 3  # zxcvbn: 3 = "safely unguessable", resists offline attack on a slow hash


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    code: str
    message: str


def check_policy(password: str, *, user_inputs: list[str]) -> list[PolicyViolation]:
    """Why ``password`` is not acceptable; empty when it is."""
    if len(password) < MIN_LENGTH:
        return [PolicyViolation("too_short", f"Use at least {MIN_LENGTH} characters.")]
    if len(password) > MAX_LENGTH:
        return [PolicyViolation("too_long", f"Use at most {MAX_LENGTH} characters.")]
    from zxcvbn import zxcvbn  # here: its word lists cost a process that never checks one 14 MB

    result = zxcvbn(password, user_inputs=user_inputs)
    if result["score"] >= MIN_SCORE:
        return []
    feedback = result["feedback"]
    hint = feedback.get("warning") or "This password is too easy to guess."
    suggestions = " ".join(feedback.get("suggestions", []))
    return [PolicyViolation("too_guessable", f"{hint} {suggestions}".strip())]


class Passwords:
    def __init__(
        self, *, memory_kib: int = 19456, time_cost: int = 2, parallelism: int = 1
    ) -> None:
        self._hasher = PasswordHasher(
            memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism
        )
        # Verified against when the email is unknown, so both cases cost the same.
        self._decoy = self._hasher.hash("decoy password for unknown accounts")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._decoy, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
