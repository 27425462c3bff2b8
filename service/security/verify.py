"""Who is calling: API keys and JWTs verified into a ``Principal``. Pure: no web framework, no settings.

Every verification failure raises ``AuthError``, whose message is the same whatever check failed (a caller
probing tokens learns nothing); the check that failed is in ``AuthError.reason``, for the server's log.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import AuthError

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# Browsers cannot set headers on a WebSocket: they offer the subprotocols ["bearer", TOKEN] instead.
WS_BEARER_PROTOCOL = "bearer"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
JwtKey = bytes | PublicKey
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a key's name, a token's ``sub``, or (auth off) the client's address."""

    subject: str
    kind: Literal["anonymous", "api-key", "jwt"]

    @property
    def key(self) -> str:
        """The name quotas (rate limit, running jobs) are counted under."""
        return f"{self.kind}:{self.subject}"


class Authenticator(Protocol):
    def authenticate(self, token: str | None, client: str | None) -> Principal:
        """The caller behind ``token`` (a bearer credential, None when absent).

        Raises:
            AuthError: no token, or one that does not verify.
        """
        ...


class Anonymous:
    """Authentication off: everyone is let in, named by address so that per-caller quotas still apply."""

    def authenticate(self, token: str | None, client: str | None) -> Principal:
        """Always a principal: ``client`` (or "unknown")."""
        return Principal(client or "unknown", "anonymous")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class ApiKeys:
    """Static bearer keys, each under a name; compared as SHA-256 digests in constant time."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        if not keys:
            raise ValueError("api-key authentication needs at least one key")
        self._digests = [(name, _digest(key)) for name, key in keys.items()]

    def authenticate(self, token: str | None, client: str | None) -> Principal:
        """The key's name.

        Raises:
            AuthError: no key, or an unknown one.
        """
        if not token:
            raise AuthError("no credentials")
        presented = _digest(token)
        found: str | None = None
        for name, digest in self._digests:  # every key is compared: the time does not say which one matched
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        if found is None:
            raise AuthError("unknown API key")
        return Principal(found, "api-key")


@dataclass(frozen=True)
class JwtPolicy:
    """What a token must satisfy besides its signature. ``exp`` and ``sub`` are always required."""

    algorithm: str
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 0.0


class JwtVerifier:
    """Bearer JWTs signed with one fixed algorithm; the token's ``alg`` header is never trusted."""

    def __init__(self, key: JwtKey, policy: JwtPolicy) -> None:
        self._key = key
        self.policy = policy

    def authenticate(self, token: str | None, client: str | None) -> Principal:
        """The token's ``sub``.

        Raises:
            AuthError: no token, or any failed check (signature, algorithm, exp, nbf, aud, iss, claims).
        """
        if not token:
            raise AuthError("no credentials")
        policy = self.policy
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[policy.algorithm],
                audience=policy.audience,
                issuer=policy.issuer,
                leeway=policy.leeway_s,
                # Without a configured audience a token's "aud" is not ours to judge (PyJWT would refuse it).
                options={"require": ["exp", "sub"], "verify_aud": policy.audience is not None},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError(f"JWT rejected: {type(exc).__name__}: {exc}") from None
        return Principal(_subject(claims), "jwt")


_DATE_CLAIMS = ("exp", "nbf", "iat")


def _subject(claims: dict[str, Any]) -> str:
    """The checked ``sub`` of verified claims.

    PyJWT reads a date claim with ``int()``, so ``"exp": "99999999999"`` would pass, and it takes any ``sub``: an
    empty one would make every such caller share one quota.

    Raises:
        AuthError: a date claim that is not a number (RFC 7519 NumericDate), or a ``sub`` that is not a
            non-empty string.
    """
    for name in _DATE_CLAIMS:
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(f"JWT rejected: claim {name} is not a number")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise AuthError("JWT rejected: claim sub is not a non-empty string")
    return subject


def mint_token(
    secret: bytes,
    subject: str,
    ttl_s: float,
    *,
    algorithm: str = "HS256",
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """A signed development token for ``subject`` that expires after ``ttl_s`` seconds.

    Raises:
        ValueError: not an HMAC algorithm, or a non-positive ``ttl_s``.
    """
    if algorithm not in HMAC_ALGORITHMS:
        raise ValueError(f"tokens are minted with a secret ({', '.join(HMAC_ALGORITHMS)}), not {algorithm}")
    if ttl_s <= 0:
        raise ValueError(f"ttl must be positive, got {ttl_s}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": subject, "iat": issued, "exp": issued + int(ttl_s)}
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``45s``, ``30m``, ``1h`` or ``2d``.

    Raises:
        ValueError: not a positive number with an optional unit.
    """
    match = _DURATION.match(text.strip().lower())
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ValueError(f"duration {text!r} is not like 90, 45s, 30m, 1h or 2d")
    return seconds


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header; None for no header or another scheme."""
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def subprotocol_token(protocols: Sequence[str]) -> str | None:
    """The token a browser offered as WebSocket subprotocols ``["bearer", TOKEN]``; None when not offered."""
    try:
        index = list(protocols).index(WS_BEARER_PROTOCOL)
    except ValueError:
        return None
    return protocols[index + 1] if index + 1 < len(protocols) else None


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_cors(origins: Sequence[str], methods: Sequence[str], headers: Sequence[str], credentials: bool) -> None:
    """Refuse CORS settings that would open more than they name.

    Raises:
        ValueError: origin * with credentials, a wildcard method or header, or an origin that is not scheme://host.
    """
    if "*" in origins and credentials:
        raise ValueError(
            "cors_origins * with cors_allow_credentials would let every site act with a user's credentials; "
            "list the origins explicitly or turn credentials off"
        )
    for kind, values in (("cors_methods", methods), ("cors_headers", headers)):
        if "*" in values:
            raise ValueError(f"{kind} must be listed explicitly, not *")
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port], without a path or trailing slash")
