"""HMAC-SHA256 request signing, Backend.AI's scheme (DESIGN.md §6). Pure functions, no I/O.

Signing string::

    METHOD\\nPATH?QUERY\\nDATE\\nhost:HOST\\ncontent-type:TYPE\\n
    x-backendai-version:VER\\n<sha256 hex of body>

(shown on two lines; it is one string)

Signing key: ``HMAC(secret_key, yyyymmdd of DATE)``, then ``HMAC(that, HOST)``. The request
carries ``Date`` / ``X-BackendAI-Date`` (ISO 8601), ``X-BackendAI-Version`` and
``Authorization: BackendAI signMethod=HMAC-SHA256, credential=<access_key>:<signature hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

SIGN_METHOD = "HMAC-SHA256"
API_VERSION = "v1.20260101"
MAX_CLOCK_SKEW = timedelta(minutes=15)

_AUTHORIZATION = re.compile(
    r"^BackendAI\s+signMethod=(?P<method>[\w-]+)\s*,\s*"
    r"credential=(?P<access_key>[A-Za-z0-9_-]{1,64})"
    r":(?P<signature>[0-9a-fA-F]+)\s*$"
)


class SignatureError(Exception):
    """Why a request's signature was refused; the message is safe to show to the caller."""


@dataclass(frozen=True)
class ParsedAuthorization:
    sign_method: str
    access_key: str
    signature: str


def format_date(moment: datetime) -> str:
    """ISO 8601 in UTC with an explicit offset, as sent in ``X-BackendAI-Date``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SignatureError(f"invalid request date {value!r}: expected ISO 8601") from None
    if moment.tzinfo is None:
        raise SignatureError(f"invalid request date {value!r}: a timezone offset is required")
    return moment


@dataclass(frozen=True)
class SignedParts:
    """The parts of a request that its signature covers."""

    method: str
    path_with_query: str
    date: str
    host: str
    content_type: str
    api_version: str
    body: bytes


def signing_string(parts: SignedParts) -> str:
    body_hash = hashlib.sha256(parts.body).hexdigest()
    return (
        f"{parts.method.upper()}\n{parts.path_with_query}\n{parts.date}\nhost:{parts.host}\n"
        f"content-type:{parts.content_type}\nx-backendai-version:{parts.api_version}\n{body_hash}"
    )


def signing_key(*, secret_key: str, date: datetime, host: str) -> bytes:
    day_key = hmac.new(
        secret_key.encode(), date.astimezone(UTC).strftime("%Y%m%d").encode(), hashlib.sha256
    ).digest()
    return hmac.new(day_key, host.encode(), hashlib.sha256).digest()


def compute_signature(*, secret_key: str, parts: SignedParts) -> str:
    """The hex HMAC-SHA256 signature of a request."""
    key = signing_key(secret_key=secret_key, date=parse_date(parts.date), host=parts.host)
    return hmac.new(key, signing_string(parts).encode(), hashlib.sha256).hexdigest()


def sign_request(
    *,
    access_key: str,
    secret_key: str,
    method: str,
    path_with_query: str,
    host: str,
    content_type: str,
    body: bytes,
    api_version: str = API_VERSION,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers to add to a request: ``Date``, ``X-BackendAI-Date``,
    ``X-BackendAI-Version``, ``Authorization`` (and ``Content-Type``)."""
    date = format_date(now or datetime.now(UTC))
    parts = SignedParts(method, path_with_query, date, host, content_type, api_version, body)
    signature = compute_signature(secret_key=secret_key, parts=parts)
    return {
        "Date": date,
        "X-BackendAI-Date": date,
        "X-BackendAI-Version": api_version,
        "Content-Type": content_type,
        "Authorization": (
            f"BackendAI signMethod={SIGN_METHOD}, credential={access_key}:{signature}"
        ),
    }


def parse_authorization(value: str) -> ParsedAuthorization:
    match = _AUTHORIZATION.match(value)
    if match is None:
        raise SignatureError(
            "malformed Authorization header: expected"
            " 'BackendAI signMethod=HMAC-SHA256, credential=<access_key>:<signature>'"
        )
    if match["method"] != SIGN_METHOD:
        raise SignatureError(f"unsupported signMethod {match['method']!r}")
    return ParsedAuthorization(match["method"], match["access_key"], match["signature"].lower())


def verify_signature(
    *,
    authorization: ParsedAuthorization,
    secret_key: str,
    parts: SignedParts,
    now: datetime | None = None,
    max_skew: timedelta = MAX_CLOCK_SKEW,
) -> None:
    """Raise :class:`SignatureError` unless the signature matches and the date is within
    ``max_skew`` of ``now``. The comparison takes constant time."""
    moment = parse_date(parts.date)
    skew = abs((now or datetime.now(UTC)) - moment)
    if skew > max_skew:
        raise SignatureError(
            f"request date is {int(skew.total_seconds())} s away from the server's clock"
            f" (at most {int(max_skew.total_seconds())} s allowed)"
        )
    expected = compute_signature(secret_key=secret_key, parts=parts)
    if not hmac.compare_digest(expected, authorization.signature):
        raise SignatureError("signature mismatch")


class EndpointSigner:
    """Signs requests to one service's base URL (``api``, e.g. the manager's) with a keypair:
    the path signed is the base URL's path plus the request's, and ``Host`` is sent as signed
    (with the port, which HTTP clients drop when it is the scheme's default)."""

    def __init__(self, api: str, access_key: str | None, secret_key: str | None) -> None:
        self.api = api.rstrip("/")
        parts = urlsplit(self.api)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base_path = parts.path
        self.host = f"{parts.hostname}:{port}"
        self.access_key = access_key
        self.secret_key = secret_key

    def url(self, path: str) -> str:
        return self.api + path

    def headers(self, method: str, path: str, body: bytes, content_type: str) -> dict[str, str]:
        """The request's headers; without a keypair only ``Content-Type`` (the service will
        refuse the request, and say why)."""
        if self.access_key is None or self.secret_key is None:
            return {"Content-Type": content_type}
        return {"Host": self.host} | sign_request(
            access_key=self.access_key,
            secret_key=self.secret_key,
            method=method,
            path_with_query=self._base_path + path,
            host=self.host,
            content_type=content_type,
            body=body,
        )
