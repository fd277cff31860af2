"""Standard Webhooks signatures: the official test vector and what our headers look like."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from rivya_webhooks.crypto import secret_decrypt, secret_encrypt, secret_generate
from rivya_webhooks.signing import signature_header, signed_headers

# From standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

TOKEN = re.compile(r"^v1,[A-Za-z0-9+/]+={0,2}$")


def test_official_test_vector():
    header = signature_header(msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY, secrets=[VECTOR_SECRET])
    assert header == VECTOR_SIGNATURE


def test_official_test_vector_with_plain_hmac():
    # The same bytes by hand, so the vector does not only test the package against itself.
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{VECTOR_ID}.{VECTOR_TIMESTAMP}.{VECTOR_BODY}".encode(), hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == VECTOR_SIGNATURE


def test_headers_verify_and_have_strict_shapes():
    secret = secret_generate()
    body = '{"id":"evt_x","type":"webhook.test","created_at":"2026-01-01T00:00:00Z","data":{"é":"ü"}}'
    now = int(time.time())
    headers = signed_headers(msg_id="evt_abc", timestamp=now, body=body, secrets=[secret])
    assert headers["webhook-id"] == "evt_abc"
    assert re.fullmatch(r"\d+", headers["webhook-timestamp"])
    assert all(TOKEN.match(token) for token in headers["webhook-signature"].split(" "))
    assert Webhook(secret).verify(body.encode("utf-8"), headers) == {
        "id": "evt_x",
        "type": "webhook.test",
        "created_at": "2026-01-01T00:00:00Z",
        "data": {"é": "ü"},
    }


def test_two_secrets_give_two_tokens_each_verifying_alone():
    new, old = secret_generate(), secret_generate()
    body = "{}"
    headers = signed_headers(msg_id="evt_1", timestamp=int(time.time()), body=body, secrets=[new, old])
    tokens = headers["webhook-signature"].split(" ")
    assert len(tokens) == 2
    for secret, token in ((new, tokens[0]), (old, tokens[1])):
        Webhook(secret).verify(body, {**headers, "webhook-signature": token})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_generate()).verify(body, headers)


def test_tampered_or_stale_requests_fail_verification():
    secret = secret_generate()
    headers = signed_headers(msg_id="evt_1", timestamp=int(time.time()), body='{"a":1}', secrets=[secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"a":2}', headers)
    stale = signed_headers(msg_id="evt_1", timestamp=int(time.time()) - 301, body='{"a":1}', secrets=[secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"a":1}', stale)


def test_webhook_id_with_a_dot_is_refused():
    with pytest.raises(ValueError, match="must not contain"):
        signed_headers(msg_id="evt.1", timestamp=1, body="{}", secrets=[secret_generate()])


def test_secret_format_and_encryption_at_rest(settings):
    secret = secret_generate()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    token = secret_encrypt(secret)
    assert secret not in token
    assert secret.removeprefix("whsec_") not in token
    assert secret_decrypt(token) == secret
    # SECRET_KEY rotation: the old key in SECRET_KEY_FALLBACKS still decrypts.
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-brand-new-secret-key-for-this-test-only"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert secret_decrypt(token) == secret


@pytest.mark.django_db
def test_reencrypt_command_moves_secrets_to_the_new_key(settings, account, resolver, rivya_settings):
    from django.core.management import call_command

    from rivya_webhooks.crypto import WebhooksConfigurationError
    from rivya_webhooks.models import WebhookEndpoint
    from rivya_webhooks.services import webhook_endpoint_create, webhook_endpoint_rotate_secret

    rivya_settings("RIVYA_WEBHOOKS", RESOLVER=resolver)
    endpoint, first = webhook_endpoint_create(account=account, url="https://hooks.example.com/x", event_types=["*"])
    endpoint, second = webhook_endpoint_rotate_secret(endpoint=endpoint)
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "the-next-secret-key-after-a-rotation"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    call_command("rivya_webhooks_reencrypt", stdout=None)
    settings.SECRET_KEY_FALLBACKS = []
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.signing_secrets(endpoint.updated_at) == [second, first]
    settings.SECRET_KEY = old_key
    with pytest.raises(WebhooksConfigurationError):
        endpoint.signing_secrets(endpoint.updated_at)
