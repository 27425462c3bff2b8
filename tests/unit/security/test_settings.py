"""Security settings: the insecure-bind refusal, credentials checks, CORS refusals and ``chunkserve token``."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from service.api.auth import access_from_settings
from service.cli import build_parser, main, settings_from_args
from service.config import Settings
from service.security.verify import ApiKeys, JwtVerifier
from tests.support.tokens import public_pem

SECRET = "k" * 48


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def _refusal(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        settings_from_args(build_parser().parse_args(argv))
    return str(info.value)


def test_no_auth_on_a_public_address_is_refused_with_the_reason_and_the_fixes() -> None:
    message = _refusal(["serve", "--host", "0.0.0.0"])
    assert "refusing to serve on 0.0.0.0 without authentication" in message
    assert "CHUNKSERVE_AUTH_MODE=api-key or jwt" in message and "--insecure" in message


def test_insecure_allows_no_auth_on_a_public_address() -> None:
    settings = settings_from_args(build_parser().parse_args(["serve", "--host", "0.0.0.0", "--insecure"]))
    assert settings.host == "0.0.0.0" and settings.auth_mode == "none" and settings.insecure


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_no_auth_is_the_default_on_loopback(host: str) -> None:
    assert Settings(host=host).auth_mode == "none"


def test_auth_on_a_public_address_needs_no_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNKSERVE_API_KEYS", "ops:" + "a" * 24 + ", " + "b" * 24)
    settings = settings_from_args(build_parser().parse_args(["serve", "--host", "0.0.0.0", "--auth-mode", "api-key"]))
    assert sorted(settings.api_key_table().values()) == ["a" * 24, "b" * 24]
    assert isinstance(access_from_settings(settings).authenticator, ApiKeys)


def test_api_keys_come_from_a_file_too(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# one per line\nci:" + "c" * 20 + "\n")
    settings = Settings(auth_mode="api-key", api_key_file=path)
    assert settings.api_key_table() == {"ci": "c" * 20}


def test_api_key_mode_without_keys_or_with_a_weak_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    assert "needs keys" in _refusal(["serve", "--auth-mode", "api-key"])
    assert "cannot read API keys file" in _refusal(
        ["serve", "--auth-mode", "api-key", "--api-key-file", str(tmp_path / "missing")]
    )
    with pytest.raises(ValidationError) as info:
        Settings(auth_mode="api-key", api_keys="weakkey1")  # type: ignore[arg-type]  # as the environment gives it
    assert "at least 16" in str(info.value) and "weakkey1" not in str(info.value)


def test_secrets_have_no_flags() -> None:
    for flag in ("--jwt-secret", "--api-keys"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", flag, "x" * 40])


def test_jwt_mode_needs_exactly_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "exactly one of CHUNKSERVE_JWT_SECRET" in _refusal(["serve", "--auth-mode", "jwt"])
    monkeypatch.setenv("CHUNKSERVE_JWT_SECRET", "short")
    assert "HS256 needs at least 32" in _refusal(["serve", "--auth-mode", "jwt"])
    monkeypatch.setenv("CHUNKSERVE_JWT_SECRET", SECRET)
    both = ["serve", "--auth-mode", "jwt", "--jwt-public-key", "/some/key.pem"]
    assert "exactly one of" in _refusal(both)


def test_a_public_key_file_selects_rs256_and_refuses_hmac(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    settings = Settings(auth_mode="jwt", jwt_public_key=str(path), jwt_audience="chunkserve")
    authenticator = access_from_settings(settings).authenticator
    assert isinstance(authenticator, JwtVerifier)
    assert authenticator.policy.algorithm == "RS256" and authenticator.policy.audience == "chunkserve"
    with pytest.raises(ValidationError, match="does not fit an RSA key"):
        Settings(auth_mode="jwt", jwt_public_key=str(path), jwt_algorithm="HS256")


def test_cors_wildcard_with_credentials_is_refused_at_start_up() -> None:
    message = _refusal(["serve", "--cors-origins", "*", "--cors-allow-credentials"])
    assert "list the origins explicitly" in message
    settings = settings_from_args(build_parser().parse_args(["serve", "--cors-origins", "https://a.example,*"]))
    assert settings.cors_origins == ["https://a.example", "*"]


def test_metrics_are_open_unless_auth_metrics() -> None:
    assert "/metrics" in access_from_settings(Settings()).open_paths
    closed = access_from_settings(Settings(auth_metrics=True)).open_paths
    assert closed == {"/health", "/ready", "/docs", "/redoc", "/openapi.json", "/dashboard"}


def test_token_command_mints_a_token_the_server_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHUNKSERVE_JWT_SECRET", SECRET)
    monkeypatch.setenv("CHUNKSERVE_JWT_AUDIENCE", "chunkserve")
    assert main(["token", "--sub", "dev", "--ttl", "30m"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="chunkserve")
    assert claims["sub"] == "dev" and claims["exp"] - claims["iat"] == 1800
    verifier = access_from_settings(Settings(auth_mode="jwt")).authenticator
    assert verifier.authenticate(token, None).subject == "dev"


def test_token_command_without_a_secret_or_with_a_bad_ttl_says_what_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="set CHUNKSERVE_JWT_SECRET"):
        main(["token", "--sub", "dev"])
    monkeypatch.setenv("CHUNKSERVE_JWT_SECRET", SECRET)
    with pytest.raises(SystemExit, match="is not like"):
        main(["token", "--sub", "dev", "--ttl", "forever"])
