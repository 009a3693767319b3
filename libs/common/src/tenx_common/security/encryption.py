"""The Fernet keys that encrypt secrets at rest (auth's signing keys, notify's
webhook secrets)."""

from cryptography.fernet import Fernet
from pydantic import SecretStr

from tenx_common.settings import ServiceSettings


def load_fernet(settings: ServiceSettings, field: str, *, encrypts: str) -> Fernet:
    """The Fernet key in ``settings.<field>``. A service does not start without
    it: what it encrypts could not be read back under a key made up at startup."""
    key: SecretStr = getattr(settings, field)
    if not key.get_secret_value():
        variable = f"{settings.model_config.get('env_prefix', '')}{field}".upper()
        raise RuntimeError(
            f"{variable} is not set: {settings.service_name} does not start without the key "
            f"that encrypts {encrypts} (the local stack generates one)"
        )
    return Fernet(key.get_secret_value())
