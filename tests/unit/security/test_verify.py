"""security/verify.py and security/credentials.py: API keys, JWT verification (the attack matrix), key material."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import AuthError
from service.security.credentials import hmac_secret, jwt_algorithm, load_public_key, parse_api_keys
from service.security.verify import (
    Anonymous,
    ApiKeys,
    JwtPolicy,
    JwtVerifier,
    Principal,
    bearer_token,
    check_cors,
    is_loopback_host,
    mint_token,
    parse_duration,
    subprotocol_token,
)
from tests.support.tokens import claims as base_claims
from tests.support.tokens import forge_hs256, public_pem

SECRET = "s" * 64
OTHER_SECRET = "o" * 64


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def claims(**overrides: Any) -> dict[str, Any]:
    return base_claims(**{"aud": "chunkserve", "iss": "idp", **overrides})


@pytest.fixture(scope="module")
def hs_verifier() -> JwtVerifier:
    return JwtVerifier(hmac_secret(SECRET), JwtPolicy("HS256", audience="chunkserve", issuer="idp"))


def test_api_keys_name_the_caller_and_refuse_the_rest() -> None:
    keys = ApiKeys(parse_api_keys(["alice:" + "a" * 20, "b" * 20]))
    assert keys.authenticate("a" * 20, "10.0.0.1") == Principal("alice", "api-key")
    bare = keys.authenticate("b" * 20, None)
    assert bare.kind == "api-key" and bare.subject.startswith("key-") and "b" * 20 not in bare.subject
    for token in (None, "", "a" * 19, "a" * 21, "alice"):
        with pytest.raises(AuthError) as info:
            keys.authenticate(token, None)
        assert info.value.message == "missing or invalid credentials"


def test_api_key_list_skips_comments_and_refuses_weak_or_repeated_keys() -> None:
    assert parse_api_keys(["# team keys", "", "  ops:" + "k" * 16 + "  "]) == {"ops": "k" * 16}
    with pytest.raises(ValueError, match="at least 16") as info:
        parse_api_keys(["ci:tooshort"])
    assert "tooshort" not in str(info.value)
    with pytest.raises(ValueError, match="used twice"):
        parse_api_keys(["a:" + "x" * 16, "a:" + "y" * 16])
    with pytest.raises(ValueError, match="repeats an earlier key"):
        parse_api_keys(["a:" + "x" * 16, "b:" + "x" * 16])


def test_anonymous_names_the_caller_by_address() -> None:
    assert Anonymous().authenticate(None, "127.0.0.1") == Principal("127.0.0.1", "anonymous")
    assert Principal("127.0.0.1", "anonymous").key == "anonymous:127.0.0.1"


def test_a_good_hs256_token_names_its_subject(hs_verifier: JwtVerifier) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert hs_verifier.authenticate(token, None) == Principal("alice", "jwt")


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("bad signature", lambda: jwt.encode(claims(), OTHER_SECRET, algorithm="HS256")),
        ("alg none", lambda: jwt.encode(claims(), "", algorithm="none")),
        ("other hmac alg", lambda: jwt.encode(claims(), SECRET, algorithm="HS512")),
        ("expired", lambda: jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")),
        ("no exp", lambda: jwt.encode(claims(exp=None), SECRET, algorithm="HS256")),
        ("no sub", lambda: jwt.encode(claims(sub=None), SECRET, algorithm="HS256")),
        ("wrong audience", lambda: jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256")),
        ("no audience", lambda: jwt.encode(claims(aud=None), SECRET, algorithm="HS256")),
        ("wrong issuer", lambda: jwt.encode(claims(iss="evil"), SECRET, algorithm="HS256")),
        ("not yet valid", lambda: jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256")),
        ("garbage", lambda: "not.a.jwt"),
        ("empty", lambda: ""),
    ],
)
def test_every_bad_token_gets_the_same_answer(hs_verifier: JwtVerifier, case: str, make: Any) -> None:
    with pytest.raises(AuthError) as info:
        hs_verifier.authenticate(make(), None)
    assert info.value.message == "missing or invalid credentials"


def test_leeway_admits_a_token_just_expired() -> None:
    verifier = JwtVerifier(hmac_secret(SECRET), JwtPolicy("HS256", leeway_s=120))
    token = jwt.encode(claims(exp=int(time.time()) - 60, aud=None), SECRET, algorithm="HS256")
    assert verifier.authenticate(token, None).subject == "alice"


def test_without_a_configured_audience_the_tokens_aud_is_not_judged() -> None:
    verifier = JwtVerifier(hmac_secret(SECRET), JwtPolicy("HS256"))
    token = jwt.encode(claims(aud="anything"), SECRET, algorithm="HS256")
    assert verifier.authenticate(token, None).subject == "alice"


def test_rs256_accepts_its_keys_tokens_and_refuses_hs256_signed_with_the_public_pem(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = public_pem(rsa_key)
    key = load_public_key(pem)
    verifier = JwtVerifier(key, JwtPolicy(jwt_algorithm(key, None)))
    assert verifier.policy.algorithm == "RS256"
    good = jwt.encode(claims(aud=None), rsa_key, algorithm="RS256")
    assert verifier.authenticate(good, None).subject == "alice"
    # The classic confusion attack: HMAC over the token with the (public) PEM as the secret.
    forged = forge_hs256(claims(sub="mallory", aud=None), pem.encode())
    with pytest.raises(AuthError):
        verifier.authenticate(forged, None)


def test_es256_is_inferred_from_a_p256_key_and_other_curves_are_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    key = load_public_key(public_pem(ec_key).replace("\n", "\\n"))  # as an environment variable holds it
    assert jwt_algorithm(key, None) == "ES256"
    verifier = JwtVerifier(key, JwtPolicy("ES256"))
    assert verifier.authenticate(jwt.encode(claims(aud=None), ec_key, algorithm="ES256"), None).subject == "alice"
    with pytest.raises(ValueError, match="does not fit an EC key"):
        jwt_algorithm(key, "ES384")


def test_algorithms_must_fit_their_key(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="needs a public key"):
        jwt_algorithm(hmac_secret(SECRET), "RS256")
    with pytest.raises(ValueError, match="does not fit an RSA key"):
        jwt_algorithm(load_public_key(public_pem(rsa_key)), "HS256")
    with pytest.raises(ValueError, match="at least 32"):
        hmac_secret("x" * 31)
    with pytest.raises(ValueError, match="HS512 needs at least 64"):
        hmac_secret("x" * 63, "HS512")
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
    with pytest.raises(ValueError, match="cannot read"):
        load_public_key("/nonexistent/key.pem")


def test_minted_tokens_verify_and_carry_the_configured_claims() -> None:
    token = mint_token(hmac_secret(SECRET), "dev", 3600, audience="chunkserve", issuer="idp", now=1_000_000)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience="chunkserve", options={"verify_exp": False})
    assert payload == {"sub": "dev", "iat": 1_000_000, "exp": 1_003_600, "aud": "chunkserve", "iss": "idp"}
    fresh = mint_token(hmac_secret(SECRET), "dev", 60, audience="chunkserve", issuer="idp")
    verifier = JwtVerifier(hmac_secret(SECRET), JwtPolicy("HS256", audience="chunkserve", issuer="idp"))
    assert verifier.authenticate(fresh, None) == Principal("dev", "jwt")
    with pytest.raises(ValueError, match="minted with a secret"):
        mint_token(b"x" * 32, "dev", 60, algorithm="RS256")


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("1h", 3600), ("2d", 172800)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "1w", "h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not like"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), (None, None)],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_websocket_subprotocol_token() -> None:
    assert subprotocol_token(["bearer", "tok"]) == "tok"
    assert subprotocol_token(["chat", "bearer", "tok"]) == "tok"
    assert subprotocol_token(["bearer"]) is None
    assert subprotocol_token([]) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True)],
        *[("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False), ("", False)],
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_cors_settings_that_open_too_much_are_refused() -> None:
    check_cors(["https://app.example", "http://localhost:3000"], ["GET"], ["Authorization"], True)
    check_cors(["*"], ["GET"], ["Authorization"], False)
    with pytest.raises(ValueError, match="credentials"):
        check_cors(["*"], ["GET"], [], True)
    with pytest.raises(ValueError, match="cors_methods must be listed"):
        check_cors(["https://a.example"], ["*"], [], False)
    with pytest.raises(ValueError, match="cors_headers must be listed"):
        check_cors(["https://a.example"], ["GET"], ["*"], False)
    with pytest.raises(ValueError, match="without a path"):
        check_cors(["https://a.example/"], ["GET"], [], False)
