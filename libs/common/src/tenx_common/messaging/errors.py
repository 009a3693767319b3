"""How an effect tells the consumer what kind of failure it met."""


class PermanentError(Exception):
    """A failure that retrying cannot fix: the record is dead-lettered at once."""


class UnavailableError(Exception):
    """A store the effect needs is down: nothing is dead-lettered; the consumer
    stops, waits, and consumes again from its last committed offsets."""
