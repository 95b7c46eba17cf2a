from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ai.backend.common.auth.hmac_signing import (
    ParsedAuthorization,
    SignatureError,
    SignedParts,
    compute_signature,
    parse_authorization,
    sign_request,
    verify_signature,
)

ACCESS_KEY = "AKIATESTKEY0001"
SECRET_KEY = "SECRETKEY0123456789abcdef"
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
# computed independently with hashlib/hmac from the scheme in DESIGN.md §6
KNOWN_SIGNATURE = "faa8cfe4709199380b7b70fba84c780f485d28c8bdbeba97166718a0d4bcbf36"


@dataclass(frozen=True)
class Request:
    method: str = "POST"
    path_with_query: str = "/v1/jobs?wait=0"
    host: str = "127.0.0.1:8090"
    content_type: str = "application/json"
    body: bytes = b'{"name": "echo"}'


def signed_headers(
    request: Request, *, secret_key: str = SECRET_KEY, now: datetime = NOW
) -> dict[str, str]:
    return sign_request(
        access_key=ACCESS_KEY,
        secret_key=secret_key,
        method=request.method,
        path_with_query=request.path_with_query,
        host=request.host,
        content_type=request.content_type,
        body=request.body,
        now=now,
    )


def verify(
    headers: dict[str, str],
    request: Request,
    *,
    now: datetime = NOW,
    secret_key: str = SECRET_KEY,
) -> None:
    verify_signature(
        authorization=parse_authorization(headers["Authorization"]),
        secret_key=secret_key,
        parts=SignedParts(
            method=request.method,
            path_with_query=request.path_with_query,
            date=headers["X-BackendAI-Date"],
            host=request.host,
            content_type=request.content_type,
            api_version=headers["X-BackendAI-Version"],
            body=request.body,
        ),
        now=now,
    )


def test_known_vector() -> None:
    request = Request()
    assert (
        compute_signature(
            secret_key=SECRET_KEY,
            parts=SignedParts(
                method="post",
                path_with_query=request.path_with_query,
                date="2026-11-24T12:00:00+00:00",
                host=request.host,
                content_type=request.content_type,
                api_version="v1.20260101",
                body=request.body,
            ),
        )
        == KNOWN_SIGNATURE
    )
    headers = signed_headers(request)
    assert headers == {
        "Date": "2026-11-24T12:00:00+00:00",
        "X-BackendAI-Date": "2026-11-24T12:00:00+00:00",
        "X-BackendAI-Version": "v1.20260101",
        "Content-Type": "application/json",
        "Authorization": (
            f"BackendAI signMethod=HMAC-SHA256, credential={ACCESS_KEY}:{KNOWN_SIGNATURE}"
        ),
    }


def test_a_correctly_signed_request_verifies() -> None:
    request = Request()
    verify(signed_headers(request), request)
    verify(signed_headers(request), request, now=NOW + timedelta(minutes=14))
    verify(signed_headers(request), request, now=NOW - timedelta(minutes=14))


@pytest.mark.parametrize(
    "tampered",
    [
        Request(body=b'{"name": "echo2"}'),
        Request(path_with_query="/v1/jobs?wait=1"),
        Request(path_with_query="/v1/jobs/other"),
        Request(method="PUT"),
        Request(host="127.0.0.1:8091"),
        Request(content_type="text/plain"),
    ],
)
def test_tampered_request_is_refused(tampered: Request) -> None:
    headers = signed_headers(Request())
    with pytest.raises(SignatureError, match="^signature mismatch$"):
        verify(headers, tampered)


def test_tampered_date_is_refused() -> None:
    request = Request()
    headers = {**signed_headers(request), "X-BackendAI-Date": "2026-11-24T12:00:01+00:00"}
    with pytest.raises(SignatureError, match="^signature mismatch$"):
        verify(headers, request)


def test_wrong_secret_key_is_refused() -> None:
    request = Request()
    headers = signed_headers(request, secret_key="another-secret")
    with pytest.raises(SignatureError, match="^signature mismatch$"):
        verify(headers, request)


@pytest.mark.parametrize("offset", [timedelta(minutes=16), -timedelta(minutes=16)])
def test_clock_skew_beyond_fifteen_minutes_is_refused(offset: timedelta) -> None:
    request = Request()
    with pytest.raises(
        SignatureError,
        match=r"^request date is 960 s away from the server's clock \(at most 900 s allowed\)$",
    ):
        verify(signed_headers(request), request, now=NOW + offset)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer abc", "malformed Authorization header"),
        ("BackendAI signMethod=HMAC-SHA256, credential=nokey", "malformed Authorization header"),
        ("BackendAI signMethod=HMAC-MD5, credential=AK:abcd", "unsupported signMethod 'HMAC-MD5'"),
    ],
)
def test_malformed_authorization_header(header: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_authorization(header)


def test_authorization_header_is_parsed() -> None:
    parsed = parse_authorization(f"BackendAI signMethod=HMAC-SHA256, credential=AK1:{'AB' * 32}")
    assert parsed == ParsedAuthorization("HMAC-SHA256", "AK1", "ab" * 32)


@pytest.mark.parametrize(
    ("date", "message"),
    [
        ("yesterday", "invalid request date 'yesterday': expected ISO 8601"),
        ("2026-11-24T12:00:00", "a timezone offset is required"),
    ],
)
def test_bad_date_is_refused(date: str, message: str) -> None:
    request = Request()
    headers = {**signed_headers(request), "X-BackendAI-Date": date}
    with pytest.raises(SignatureError, match=message):
        verify(headers, request)


def test_signature_depends_on_the_day() -> None:
    request = Request()
    today = signed_headers(request)["Authorization"]
    tomorrow = signed_headers(request, now=NOW + timedelta(days=1))["Authorization"]
    assert today != tomorrow
