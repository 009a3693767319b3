"""Webhook signatures follow Standard Webhooks (its published test vector, and
its reference verifier), and targets in private networks are refused."""

import time
import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest
import standardwebhooks

from tenx_common.web.problems import ProblemError
from tenx_notify.domain.webhooks import (
    TargetNotAllowedError,
    WebhookIn,
    check_target,
    new_secret,
    sign,
    subscribed,
)
from tenx_notify.service_layer import webhooks


def test_the_published_test_vector() -> None:
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_the_reference_library_verifies_what_we_sign() -> None:
    secret = new_secret()
    body = b'{"type":"order.confirmed","data":{"order_id":"x"}}'
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "msg_1", now, body),
    }
    assert standardwebhooks.Webhook(secret).verify(body, headers)
    tampered = {**headers, "webhook-signature": sign(new_secret(), "msg_1", now, body)}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, tampered)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
        "http://user:pw@93.184.216.34/hook",
    ],
)
async def test_targets_in_this_network_are_refused(url: str) -> None:
    with pytest.raises(TargetNotAllowedError):
        await check_target(url)


async def test_a_public_address_is_allowed() -> None:
    await check_target("https://93.184.216.34/hook")


def test_subscriptions() -> None:
    assert subscribed(["*"], "order.cancelled")
    assert subscribed(["order.confirmed"], "order.confirmed")
    assert not subscribed(["order.confirmed"], "order.cancelled")


async def test_outside_local_mode_a_private_target_is_refused_at_registration() -> None:
    deps = cast(Any, SimpleNamespace(settings=SimpleNamespace(is_local=False)))
    body = WebhookIn.model_validate({"url": "http://169.254.169.254/x", "events": ["*"]})
    with pytest.raises(ProblemError) as refused:
        await webhooks.register(uuid.uuid4(), body, deps=deps)
    assert (refused.value.status, refused.value.code) == (422, "webhook_target_not_allowed")
