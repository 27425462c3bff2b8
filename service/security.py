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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.errors import AuthError

SigningAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
]
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_API_KEY_CHARS = 16
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# Browsers cannot set headers on a WebSocket: they offer the subprotocols ["bearer", TOKEN] instead.
WS_BEARER_PROTOCOL = "bearer"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
JwtKey = bytes | PublicKey
_KEY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
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


def parse_api_keys(entries: Iterable[str]) -> dict[str, str]:
    """``KEY`` or ``NAME:KEY`` entries (blank lines and ``#`` comments skipped) → {name: key}.

    A bare key is named ``key-`` plus the start of its SHA-256, so logs and quotas never show the key itself.

    Raises:
        ValueError: a key is too short, or a name or a key is repeated. The message never contains a key.
    """
    keys: dict[str, str] = {}
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, key = entry.partition(":")
        if not sep or not _KEY_NAME.match(name):
            name, key = "key-" + _digest(entry).hex()[:8], entry
        if len(key) < MIN_API_KEY_CHARS:
            raise ValueError(
                f"API key #{number} ({name}) has {len(key)} characters; use at least {MIN_API_KEY_CHARS}, "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if name in keys:
            raise ValueError(f"API key name {name!r} is used twice (or the same key is listed twice)")
        if key in keys.values():
            raise ValueError(f"API key #{number} ({name}) repeats an earlier key")
        keys[name] = key
    return keys


def read_key_file(path: Path) -> list[str]:
    """The lines of an API-keys file.

    Raises:
        ValueError: the file cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read API keys file {path}: {exc.__class__.__name__}") from None


def load_public_key(value: str) -> PublicKey:
    """An RSA or EC public key from PEM text (``\\n`` escapes allowed) or from the path of a PEM file.

    Raises:
        ValueError: the file cannot be read, or it holds no RSA/EC public key in PEM form.
    """
    text = value.strip()
    if text.startswith("-----BEGIN"):
        pem = text.replace("\\n", "\n").encode()
    else:
        try:
            pem = Path(text).expanduser().read_bytes()
        except OSError as exc:
            raise ValueError(
                f"JWT public key: cannot read {text!r} ({exc.__class__.__name__}); give PEM text or a path"
            ) from None
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ValueError("JWT public key is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"JWT public key must be RSA or EC, not {type(key).__name__}")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise ValueError(f"JWT public key is RSA-{key.key_size}; use at least 2048 bits")
    return key


def jwt_algorithm(key: JwtKey, algorithm: str | None) -> str:
    """The one algorithm tokens must use: ``algorithm`` checked against the key, or the key's natural one.

    Raises:
        ValueError: the algorithm does not fit the key (an HMAC algorithm with a public key, a curve mismatch).
    """
    if isinstance(key, bytes):
        chosen = algorithm or "HS256"
        if chosen not in HMAC_ALGORITHMS:
            raise ValueError(f"JWT algorithm {chosen} needs a public key; a secret signs {', '.join(HMAC_ALGORITHMS)}")
        return chosen
    if isinstance(key, rsa.RSAPublicKey):
        chosen = algorithm or "RS256"
        if chosen not in RSA_ALGORITHMS:
            raise ValueError(f"JWT algorithm {chosen} does not fit an RSA key; use one of {', '.join(RSA_ALGORITHMS)}")
        return chosen
    curve = key.curve.name
    natural = next((alg for alg, name in EC_ALGORITHMS.items() if name == curve), None)
    fitting = algorithm or natural
    if fitting is None or EC_ALGORITHMS.get(fitting) != curve:
        raise ValueError(f"JWT algorithm {algorithm or '(none)'} does not fit an EC key on {curve}")
    return fitting


def hmac_secret(secret: str, algorithm: str = "HS256") -> bytes:
    """The HMAC key bytes for ``algorithm``.

    Raises:
        ValueError: shorter than the algorithm's hash (RFC 7518 3.2); such secrets can be brute-forced offline.
    """
    key = secret.encode("utf-8")
    least = _HMAC_MIN_BYTES.get(algorithm, _HMAC_MIN_BYTES["HS256"])
    if len(key) < least:
        raise ValueError(
            f"JWT secret has {len(key)} bytes; {algorithm} needs at least {least}, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))'"
        )
    return key


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
        jwt_algorithm(key, policy.algorithm)
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
        return Principal(str(claims["sub"]), "jwt")


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
