"""The auth use cases: one function each, one transaction each.

A sign-up's password must meet the policy (``domain.passwords``), measured
against the email and name too; UserRegistered, with the verification token,
is staged in the sign-up's transaction. Argon2 runs in a worker thread, never
on the event loop.

A login's failures are counted in Redis per account (5) and per client address
(50) in a window of 15 min (``login_failures_per_account``,
``login_failures_per_ip``, ``login_window_s``); past either, 429
``too_many_attempts`` with ``Retry-After``; a success resets the account's
count. An unknown email, a wrong password and an account whose deletion is
pending are the same 401 ``invalid_credentials`` for the same work (a decoy
hash is verified). The hash is checked with no database connection held; a
password changed meanwhile is the new one's to pass. A hash made with older
parameters is replaced.

The access token is an ES256 JWT (header ``kid`` and ``typ: at+jwt``, RFC 9068;
claims iss, aud, sub, iat, nbf, exp, jti, ``sid`` for the login, and roles)
that lives ``access_token_ttl_s`` (15 min). The refresh token is opaque (``rt_``
and 32 random bytes), stored as its SHA-256, one row per link of the login's
rotation chain (its family), for ``refresh_token_ttl_s`` (30 days); each use
rotates it, and a used one presented again revokes the whole family (401
``refresh_token_reused``). A logout denylists the access token's jti in Redis
until its exp (every service asks the denylist) and revokes the family.

Verification and reset tokens are single-use, expire (48 h, 1 h) and are
stored hashed; they reach notify in UserRegistered and PasswordResetRequested.
A reset request is answered the same whether the email is known or not; a
reset revokes every refresh token of the user. Deleting an account starts the
erasure saga (``erasure``). The bootstrap admin (``ensure_admin``) exists
wherever ``admin_password`` is set, in any environment; its password follows
the setting.
"""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from tenx_auth.adapters import keys
from tenx_auth.adapters.orm import AccountDeletion, OneTimeToken, RefreshToken, SigningKey, User
from tenx_auth.domain import commands, errors
from tenx_auth.domain.passwords import check_policy
from tenx_auth.domain.secrets import new_token, token_hash
from tenx_auth.service_layer.deps import AuthDeps
from tenx_auth.settings import Settings
from tenx_common.data import UnitOfWork
from tenx_common.events.auth_users import (
    AccountDeletionRequested,
    EmailVerified,
    PasswordResetRequested,
    UserRegistered,
)
from tenx_common.security import Jwks, Limit, Principal
from tenx_common.web import ProblemError

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose, not a secret)
REQUESTED = "requested"  # the first status of an account deletion


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str


def _now() -> datetime:
    return datetime.now(UTC)


def _weak_password(password: str, *, user_inputs: list[str]) -> None:
    violations = check_policy(password, user_inputs=user_inputs)
    if violations:
        raise ProblemError(
            status=422,
            code="weak_password",
            detail=" ".join(v.message for v in violations),
        )


async def sign_up(cmd: commands.SignUp, *, deps: AuthDeps) -> User:
    email = cmd.email.lower()
    _weak_password(cmd.password, user_inputs=[email, cmd.name])
    password_hash = await asyncio.to_thread(deps.passwords.hash, cmd.password)
    async with deps.uow() as uow:
        if await _user_by_email(uow, email) is not None:
            raise errors.email_taken()
        user = User(id=uuid.uuid4(), email=email, name=cmd.name, password_hash=password_hash)
        user.roles = ["user"]
        user.email_verified = False
        uow.session.add(user)
        try:
            await uow.session.flush()
        except IntegrityError:  # a concurrent sign-up with the same email won
            raise errors.email_taken() from None
        verification, expires_at = _one_time_token(
            uow, user.id, purpose=VERIFY_EMAIL, ttl_s=deps.settings.verification_token_ttl_s
        )
        await uow.publish(
            UserRegistered(
                user_id=user.id,
                email=email,
                name=cmd.name,
                verification_token=verification,
                verification_expires_at=expires_at,
            )
        )
        await uow.commit()
        await uow.session.refresh(user)
        return user


async def log_in(cmd: commands.LogIn, *, client_ip: str, deps: AuthDeps) -> TokenPair:
    email = cmd.email.strip().lower()
    account_key = "account:" + token_hash(email).hex()[:32]
    ip_key = "ip:" + client_ip
    limits = _login_limits(deps.settings)
    for key, limit in ((account_key, limits[0]), (ip_key, limits[1])):
        verdict = await deps.limiter.check(key, limit)
        if not verdict.allowed:
            raise errors.too_many_attempts(verdict.retry_after_s)
    # The hash is checked with no connection held: a burst of logins (each
    # 20-50 ms of argon2) held the whole pool, and the rest timed out on it.
    async with deps.uow() as uow:
        found = await _user_by_email(uow, email)
    ok = await asyncio.to_thread(
        deps.passwords.verify, found.password_hash if found else None, cmd.password
    )
    async with deps.uow() as uow:
        user = None
        if found is not None and ok:
            # Keep the row until this login commits: the erasure saga may delete it
            # meanwhile (its DELETE waits, then takes the new refresh token with it).
            # A password changed since the check is the new one's to pass.
            user = await uow.session.scalar(
                select(User)
                .where(User.id == found.id, User.password_hash == found.password_hash)
                .with_for_update(read=True, key_share=True)
            )
        if user is None or await _pending_deletion(uow, user.id) is not None:
            await deps.limiter.hit(account_key, limits[0])
            await deps.limiter.hit(ip_key, limits[1])
            raise errors.invalid_credentials()
        await deps.limiter.reset(account_key)
        if deps.passwords.needs_rehash(user.password_hash):
            user.password_hash = await asyncio.to_thread(deps.passwords.hash, cmd.password)
        pair = await _issue(uow, user, family_id=uuid.uuid4(), deps=deps)
        await uow.commit()
        return pair


async def refresh(cmd: commands.Refresh, *, deps: AuthDeps) -> TokenPair:
    async with deps.uow() as uow:
        result = await uow.session.execute(
            select(RefreshToken)
            .where(RefreshToken.token_hash == token_hash(cmd.refresh_token))
            .with_for_update()
        )
        token = result.scalar_one_or_none()
        if token is None or token.revoked_at is not None or token.expires_at <= _now():
            raise errors.invalid_refresh_token()
        if token.used_at is not None:
            await _revoke_family(uow, token.family_id)
            await uow.commit()
            raise errors.refresh_token_reused()
        token.used_at = _now()
        user = await uow.session.get(User, token.user_id)
        if user is None:
            raise errors.invalid_refresh_token()
        pair = await _issue(uow, user, family_id=token.family_id, deps=deps)
        await uow.commit()
        return pair


async def log_out(principal: Principal, *, deps: AuthDeps) -> None:
    await deps.denylist.add(principal.token_id, expires_at=principal.expires_at)
    if principal.session_id is not None:
        async with deps.uow() as uow:
            await _revoke_family(uow, uuid.UUID(principal.session_id))
            await uow.commit()


async def get_user(user_id: uuid.UUID, *, deps: AuthDeps) -> User:
    async with deps.uow() as uow:
        user = await uow.session.get(User, user_id)
        if user is None:
            raise errors.user_not_found()
        return user


async def request_account_deletion(principal: Principal, *, deps: AuthDeps) -> AccountDeletion:
    """Start the erasure of the caller's account. Every session ends now; the
    erasure saga (services' replies, then the credentials) takes it from here."""
    async with deps.uow() as uow:
        pending = await _pending_deletion(uow, principal.user_id)
        if pending is not None:
            return pending
        now = _now()
        deletion = AccountDeletion(
            id=uuid.uuid4(),
            user_id=principal.user_id,
            status=REQUESTED,
            requested_at=now,
            requests=1,
            next_request_at=now + timedelta(seconds=deps.settings.deletion_rerequest_after_s),
        )
        uow.session.add(deletion)
        await uow.publish(
            AccountDeletionRequested(user_id=principal.user_id, deletion_id=deletion.id)
        )
        await _revoke_user_sessions(uow, principal.user_id)
        await uow.commit()
    await deps.denylist.add(principal.token_id, expires_at=principal.expires_at)
    return deletion


async def get_deletion(
    deletion_id: uuid.UUID, principal: Principal, *, deps: AuthDeps
) -> AccountDeletion:
    async with deps.uow() as uow:
        deletion = await uow.session.get(AccountDeletion, deletion_id)
    if deletion is None or not (principal.is_admin or deletion.user_id == principal.user_id):
        raise ProblemError(status=404, code="not_found", detail="No such account deletion.")
    return deletion


async def verify_email(cmd: commands.VerifyEmail, *, deps: AuthDeps) -> None:
    async with deps.uow() as uow:
        token = await _use_one_time_token(uow, cmd.token, purpose=VERIFY_EMAIL)
        await uow.session.execute(
            update(User).where(User.id == token.user_id).values(email_verified=True)
        )
        await uow.publish(EmailVerified(user_id=token.user_id))
        await uow.commit()


async def request_password_reset(cmd: commands.RequestPasswordReset, *, deps: AuthDeps) -> None:
    """Answered the same whether the email is known or not."""
    async with deps.uow() as uow:
        user = await _user_by_email(uow, cmd.email.strip().lower())
        if user is None:
            return
        reset, expires_at = _one_time_token(
            uow, user.id, purpose=PASSWORD_RESET, ttl_s=deps.settings.reset_token_ttl_s
        )
        await uow.publish(
            PasswordResetRequested(
                user_id=user.id, email=user.email, reset_token=reset, expires_at=expires_at
            )
        )
        await uow.commit()


async def reset_password(cmd: commands.ResetPassword, *, deps: AuthDeps) -> None:
    async with deps.uow() as uow:
        token = await _use_one_time_token(uow, cmd.token, purpose=PASSWORD_RESET)
        user = await uow.session.get(User, token.user_id)
        if user is None:
            raise errors.invalid_one_time_token()
        _weak_password(cmd.new_password, user_inputs=[user.email, user.name])
        user.password_hash = await asyncio.to_thread(deps.passwords.hash, cmd.new_password)
        await _revoke_user_sessions(uow, user.id)
        await uow.commit()


async def rotate_signing_key(*, deps: AuthDeps) -> SigningKey:
    settings = deps.settings
    async with deps.uow() as uow:
        key = await keys.rotate(
            uow.session,
            deps.fernet,
            activation_delay_s=settings.key_activation_delay_s,
            # Tokens signed by the old key until the last instance switched, plus their life.
            retire_after_s=settings.signing_key_cache_s
            + settings.access_token_ttl_s
            + settings.jwt_leeway_s,
        )
        await uow.commit()
    deps.signer.forget()
    return key


async def published_keys(*, deps: AuthDeps) -> Jwks:
    async with deps.uow() as uow:
        return await keys.published_jwks(uow.session)


async def ensure_signing_key(*, deps: AuthDeps) -> None:
    async with deps.uow() as uow:
        await uow.session.execute(select(keys.lock_signing_keys()))
        if await keys.current_key(uow.session) is None:
            uow.session.add(keys.new_signing_key(deps.fernet))
        await uow.commit()


async def ensure_admin(*, deps: AuthDeps) -> None:
    """The bootstrap admin account, from settings; its password follows the settings."""
    secret = deps.settings.admin_password
    password = secret.get_secret_value() if secret is not None else ""
    if not password:
        return
    email = deps.settings.admin_email.lower()
    password_hash = await asyncio.to_thread(deps.passwords.hash, password)
    async with deps.uow() as uow:
        user = await _user_by_email(uow, email)
        if user is None:
            user = User(id=uuid.uuid4(), email=email, name="Local admin")
            uow.session.add(user)
        elif deps.passwords.verify(user.password_hash, password):
            password_hash = user.password_hash
        user.password_hash = password_hash
        user.roles = ["admin", "user"]
        user.email_verified = True
        try:
            await uow.commit()
        except IntegrityError:  # another instance created it at the same moment
            return


def _login_limits(settings: Settings) -> tuple[Limit, Limit]:
    return (
        Limit(settings.login_failures_per_account, settings.login_window_s),
        Limit(settings.login_failures_per_ip, settings.login_window_s),
    )


async def _pending_deletion(uow: UnitOfWork, user_id: uuid.UUID) -> AccountDeletion | None:
    result = await uow.session.execute(
        select(AccountDeletion).where(
            AccountDeletion.user_id == user_id, AccountDeletion.completed_at.is_(None)
        )
    )
    return result.scalars().first()


async def _user_by_email(uow: UnitOfWork, email: str) -> User | None:
    result = await uow.session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def _issue(uow: UnitOfWork, user: User, *, family_id: uuid.UUID, deps: AuthDeps) -> TokenPair:
    now = _now()
    ttl = deps.settings.access_token_ttl_s
    claims: dict[str, Any] = {
        "iss": deps.settings.jwt_issuer,
        "aud": deps.settings.jwt_audience,
        "sub": str(user.id),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl,
        "jti": uuid.uuid4().hex,
        "sid": str(family_id),
        "roles": list(user.roles),
    }
    refresh_token = new_token("rt")
    uow.session.add(
        RefreshToken(
            family_id=family_id,
            user_id=user.id,
            token_hash=token_hash(refresh_token),
            expires_at=now + timedelta(seconds=deps.settings.refresh_token_ttl_s),
        )
    )
    access_token = await deps.signer.sign(claims)
    return TokenPair(access_token=access_token, expires_in=ttl, refresh_token=refresh_token)


async def _revoke_family(uow: UnitOfWork, family_id: uuid.UUID) -> None:
    await uow.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


def _one_time_token(
    uow: UnitOfWork, user_id: uuid.UUID, *, purpose: str, ttl_s: int
) -> tuple[str, datetime]:
    """A new single-use token for ``purpose``; only its hash is stored."""
    raw = new_token("ev" if purpose == VERIFY_EMAIL else "pr")
    expires_at = _now() + timedelta(seconds=ttl_s)
    uow.session.add(
        OneTimeToken(
            token_hash=token_hash(raw), purpose=purpose, user_id=user_id, expires_at=expires_at
        )
    )
    return raw, expires_at


async def _revoke_user_sessions(uow: UnitOfWork, user_id: uuid.UUID) -> None:
    """Every refresh token of the user, in every family, stops working."""
    await uow.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


async def _use_one_time_token(uow: UnitOfWork, raw: str, *, purpose: str) -> OneTimeToken:
    result = await uow.session.execute(
        select(OneTimeToken)
        .where(OneTimeToken.token_hash == token_hash(raw), OneTimeToken.purpose == purpose)
        .with_for_update()
    )
    token = result.scalar_one_or_none()
    if token is None or token.used_at is not None or token.expires_at <= _now():
        raise errors.invalid_one_time_token()
    token.used_at = _now()
    return token
