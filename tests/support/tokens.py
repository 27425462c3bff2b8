"""Token helpers for the auth tests: claims, public PEMs and hand-forged HS256 tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set (sub alice, five minutes left); an override of None removes that claim."""
    now = int(time.time())
    values: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 300}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """The SubjectPublicKeyInfo PEM of ``key``."""
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed with any bytes, a public key's PEM included (PyJWT refuses to sign that)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = _b64(hmac.new(secret, header + b"." + body, hashlib.sha256).digest())
    return (header + b"." + body + b"." + signature).decode()
