"""What auth's handlers need; built once by the bootstrap."""

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet

from tenx_auth.adapters.keys import Signer
from tenx_auth.domain.passwords import Passwords
from tenx_auth.settings import Settings
from tenx_common.data import UnitOfWork
from tenx_common.security import Denylist, RateLimiter


@dataclass
class AuthDeps:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    passwords: Passwords
    signer: Signer
    fernet: Fernet  # the signing keys' private halves, at rest
    limiter: RateLimiter
    denylist: Denylist
