"""What becomes of a delivery after a failed attempt, decided without a server:
dead at once when sending again cannot help or after the last attempt, else due
again after a jittered backoff below the doubling ceiling."""

from datetime import timedelta

from sqlalchemy.sql.elements import BindParameter

from tenx_notify.domain.deliveries import DeliveryStatus
from tenx_notify.service_layer.deliveries import PermanentDeliveryError, after_failure
from tenx_notify.settings import Settings

SETTINGS = Settings(delivery_max_attempts=4, delivery_backoff_s=1.0, delivery_backoff_max_s=5.0)


def test_a_permanent_refusal_is_dead_at_once() -> None:
    values = after_failure(
        PermanentDeliveryError("SMTP 550: no such user"), attempts=1, settings=SETTINGS
    )

    assert values == {
        "status": DeliveryStatus.DEAD,
        "last_error": "PermanentDeliveryError: SMTP 550: no such user",
        "next_attempt_at": None,
    }


def test_a_channel_no_sender_knows_is_dead_at_once() -> None:
    assert after_failure(KeyError("pigeon"), attempts=1, settings=SETTINGS)["status"] == "dead"


def test_the_last_attempt_is_dead() -> None:
    assert after_failure(TimeoutError(), attempts=4, settings=SETTINGS)["status"] == "dead"


def test_an_earlier_failure_is_due_again_within_the_backoff_ceiling() -> None:
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0)):
        values = after_failure(ConnectionError("refused"), attempts=attempts, settings=SETTINGS)

        assert "status" not in values  # still pending
        assert values["last_error"] == "ConnectionError: refused"
        wait = values["next_attempt_at"].right
        assert isinstance(wait, BindParameter)
        assert isinstance(wait.value, timedelta)
        assert timedelta(0) <= wait.value <= timedelta(seconds=ceiling)
