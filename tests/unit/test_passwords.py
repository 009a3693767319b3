"""Password policy and Argon2id hashing."""

import pytest

from tenx_auth.domain.passwords import Passwords, check_policy


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short1!", "too_short"),
        ("x" * 129, "too_long"),
        ("password123", "too_guessable"),
        ("qwertyuiop", "too_guessable"),
        ("liddellalice", "too_guessable"),  # built from the user's own name
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, code: str) -> None:
    violations = check_policy(password, user_inputs=["alice@example.com", "Alice Liddell"])
    assert [v.code for v in violations] == [code]
    assert violations[0].message


def test_a_strong_password_passes() -> None:
    assert check_policy("correct horse battery staple 42", user_inputs=["bob@example.com"]) == []


def test_hashes_use_owasp_argon2id_parameters(passwords: Passwords) -> None:
    hashed = passwords.hash("correct horse battery staple 42")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(hashed, "correct horse battery staple 42")
    assert not passwords.verify(hashed, "wrong")


def test_unknown_account_never_verifies(passwords: Passwords) -> None:
    assert not passwords.verify(None, "decoy password for unknown accounts")


def test_a_hash_with_old_parameters_needs_a_rehash(passwords: Passwords) -> None:
    weaker = Passwords(memory_kib=8192, time_cost=1)
    old_hash = weaker.hash("correct horse battery staple 42")
    assert passwords.verify(old_hash, "correct horse battery staple 42")
    assert passwords.needs_rehash(old_hash)
    assert not passwords.needs_rehash(passwords.hash("x"))
