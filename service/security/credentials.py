"""Key material for authentication, checked at start-up: API-key lists, JWT secrets and public keys.

Nothing here runs per request; ``service/security/verify.py`` verifies callers with what these functions return.
``load_api_keys`` and ``load_jwt_verification`` assemble the whole of it from the settings' values.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.security.verify import HMAC_ALGORITHMS, JwtKey, JwtPolicy, PublicKey

SigningAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
]
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_API_KEY_CHARS = 16
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_KEY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


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
            name, key = "key-" + hashlib.sha256(entry.encode()).hexdigest()[:8], entry
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


def load_api_keys(keys: Iterable[str], key_file: Path | None) -> dict[str, str]:
    """The API keys ``keys`` plus those of ``key_file``, by name.

    Raises:
        ValueError: no keys, an unreadable file, or a bad key (the message never shows a key).
    """
    entries = list(keys)
    if key_file is not None:
        entries += read_key_file(key_file)
    table = parse_api_keys(entries)
    if not table:
        raise ValueError("auth_mode api-key needs keys: set CHUNKSERVE_API_KEYS or CHUNKSERVE_API_KEY_FILE")
    return table


def load_jwt_verification(
    secret: str | None,
    public_key: str | None,
    algorithm: SigningAlgorithm | None,
    *,
    audience: str | None,
    issuer: str | None,
    leeway_s: float,
) -> tuple[JwtKey, JwtPolicy]:
    """The key (an HMAC ``secret`` or a ``public_key``) and the policy JWTs are checked against.

    Raises:
        ValueError: neither or both of a secret and a public key, or one that does not fit the algorithm.
    """
    if (secret is None) == (public_key is None):
        raise ValueError(
            "auth_mode jwt needs exactly one of CHUNKSERVE_JWT_SECRET (HS256) or CHUNKSERVE_JWT_PUBLIC_KEY "
            "(RS256/ES256)"
        )
    key: JwtKey
    if secret is not None:
        key = hmac_secret(secret, algorithm or "HS256")
    else:
        if public_key is None:
            raise ValueError("a JWT needs a secret or a public key")
        key = load_public_key(public_key)
    policy = JwtPolicy(algorithm=jwt_algorithm(key, algorithm), audience=audience, issuer=issuer, leeway_s=leeway_s)
    return key, policy
