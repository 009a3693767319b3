"""How long to wait before trying again: one rule for every retry in the platform."""

import math
import random


def backoff_s(
    attempt: int, *, base_s: float, max_s: float = math.inf, jitter: bool = False
) -> float:
    """The wait after failed attempt ``attempt`` (from 1): ``base_s`` doubling
    per attempt, at most ``max_s``. With ``jitter``, a uniform draw below that
    ("full jitter"), so retries that failed together do not return together."""
    # The exponent is bounded: a float power past ~1000 overflows, and every
    # caller's cap is reached long before this one.
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 64))
    return random.uniform(0, ceiling) if jitter else ceiling  # noqa: S311 (not a secret)
