"""Identities, credentials, tokens, verification, reset and the account-deletion saga."""
