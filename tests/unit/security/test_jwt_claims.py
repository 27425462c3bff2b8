"""Signed tokens with ill-typed claims are refused: date claims are numbers, ``sub`` is a non-empty string."""

from __future__ import annotations

import time
from typing import Any

import pytest

from service.errors import AuthError
from service.security.credentials import hmac_secret
from service.security.verify import JwtPolicy, JwtVerifier
from tests.support.tokens import claims, forge_hs256

SECRET = "s" * 64
LATER = int(time.time()) + 3600


def _verify(payload: dict[str, Any]) -> str:
    verifier = JwtVerifier(hmac_secret(SECRET), JwtPolicy("HS256"))
    return verifier.authenticate(forge_hs256(payload, SECRET.encode()), "127.0.0.1").subject


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"exp": str(LATER)}, "claim exp is not a number"),
        ({"exp": True}, "exp"),
        ({"nbf": "0"}, "claim nbf is not a number"),
        ({"iat": "0"}, "claim iat is not a number"),
        ({"sub": ""}, "claim sub is not a non-empty string"),
        ({"sub": "   "}, "claim sub is not a non-empty string"),
        ({"sub": 42}, "Subject"),
        ({"sub": ["alice"]}, "Subject"),
    ],
)
def test_a_correctly_signed_token_with_an_ill_typed_claim_is_refused(overrides: dict[str, Any], why: str) -> None:
    with pytest.raises(AuthError) as refused:
        _verify(claims(**{"exp": LATER, **overrides}))
    assert why in refused.value.reason
    assert refused.value.message == "missing or invalid credentials"


def test_a_well_typed_token_passes() -> None:
    assert _verify(claims(exp=LATER, nbf=int(time.time()) - 5)) == "alice"
