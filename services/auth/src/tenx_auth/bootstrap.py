"""Builds the auth service once, at startup: clients, signing keys, the local
admin, the handlers' dependencies; and closes them at shutdown."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cryptography.fernet import Fernet

from tenx_auth.adapters.keys import Signer
from tenx_auth.adapters.orm import outbox
from tenx_auth.domain.passwords import Passwords
from tenx_auth.service_layer import handlers
from tenx_auth.service_layer.deps import AuthDeps
from tenx_auth.settings import Settings
from tenx_common.runtime import ServiceWiring, open_infra
from tenx_common.security import Denylist, JwksCache, RateLimiter, TokenVerifier, load_fernet

AuthWiring = ServiceWiring[AuthDeps]


def key_encryption(settings: Settings) -> Fernet:
    return load_fernet(settings, "key_encryption_key", encrypts="its signing keys")


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[AuthWiring]:
    fernet = key_encryption(settings)
    async with open_infra(settings) as infra:
        denylist = Denylist(infra.redis)
        deps = AuthDeps(
            settings=settings,
            uow=infra.unit_of_work(outbox=outbox, source="/tenx/auth"),
            passwords=Passwords(),
            signer=Signer(
                session_factory=infra.engines.sessions,
                fernet=fernet,
                cache_s=settings.signing_key_cache_s,
            ),
            fernet=fernet,
            limiter=RateLimiter(infra.redis, prefix="auth:login"),
            denylist=denylist,
        )
        await handlers.ensure_signing_key(deps=deps)
        await handlers.ensure_admin(deps=deps)
        verifier = TokenVerifier(
            keys=JwksCache(
                fetch=lambda: handlers.published_keys(deps=deps),
                ttl_s=settings.signing_key_cache_s,
                min_refetch_interval_s=1.0,
            ),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            denylist=denylist,
            leeway_s=settings.jwt_leeway_s,
        )
        yield ServiceWiring(infra=infra, deps=deps, verifier=verifier)
