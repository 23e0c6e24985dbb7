"""The cloud vendors of :mod:`tests.upstream`: AWS Bedrock's runtime, Google Vertex AI, and the
credential services their SDKs call (a Google OAuth token endpoint, an AWS container
credentials endpoint).

Each checks what the real service checks, with the vendor's own reference code where there is
one:

* **Bedrock** verifies the SigV4 signature of every request: it recomputes it from the request
  as received (the headers the ``Authorization`` header says were signed, the raw path, the
  body) with the key's secret, using botocore's signer, and answers a mismatch, an unknown or
  expired key, a missing session token or a stale date with AWS's 403. A Bedrock API key
  (``Authorization: Bearer``) must be one it issued (:attr:`CloudState.bedrock_api_keys`).
  Routes: ``converse``, ``converse_stream`` (AWS event-stream frames, encoded by
  :func:`msgflux._transport.eventstream.encode_message`; the tests check them with botocore's
  parser), ``invoke`` and ``invoke_stream`` (Claude's Messages API: the body must carry
  ``anthropic_version: bedrock-2023-05-31``, no ``model`` and only the betas AWS documents,
  else Bedrock's 400 ``invalid beta flag``; the stream's events are base64 ``chunk``
  messages). Converse bodies are checked field by field (unknown keys, roles, blocks, tools)
  as Bedrock's validation does.
* **Vertex AI** (``/v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{m}:
  {method}``) takes only a Bearer token its token endpoint issued and that has not expired;
  Gemini bodies are checked as the Gemini API's, Claude's as the Messages API's with
  ``anthropic_version: vertex-2023-10-16``, no ``model`` and only ``anthropic-beta`` values
  Vertex takes (else its 400 ``Unexpected value(s)``).
* **Google's token endpoint** (``POST /token``) runs the service-account JWT grant: it checks
  the assertion's RS256 signature with the public key of the service account named in ``iss``
  (:meth:`CloudState.add_service_account`), its audience, expiry and scope, then issues a token
  valid :attr:`CloudState.token_lifetime` seconds.
* **The container credentials endpoint** (``GET /aws/credentials``, what
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` names) mints new temporary keys valid
  :attr:`CloudState.container_lifetime` seconds on every call, and revokes the previous ones.
* **EC2's instance metadata service** (IMDSv2, what ``AWS_EC2_METADATA_SERVICE_ENDPOINT``
  names): ``PUT /latest/api/token`` gives a session token, which every ``GET
  /latest/meta-data/iam/security-credentials/[role]`` must carry; the role's keys are minted as
  the container endpoint's (:attr:`CloudState.container_lifetime`).
* **Google's STS endpoint** (``POST /sts/token``, an ``external_account`` file's ``token_url``:
  workload identity federation) exchanges a subject token the test registered
  (:attr:`CloudState.federated_subjects`) for an access token the fake Vertex takes.
* **Google's metadata server** (GCE, Cloud Run, GKE workload identity: the host google-auth's
  ``GCE_METADATA_HOST``/``GCE_METADATA_IP`` name): ``GET /`` answers google-auth's ping,
  ``/computeMetadata/v1/project/project-id``, ``.../service-accounts/default/`` and ``.../token``
  (a token the fake Vertex takes); each request must carry ``Metadata-Flavor: Google``.

The same :class:`~tests.upstream.Reply` knobs script the answers (text, chunks, tool calls,
reasoning, usage, ``status``/``error``/``error_type`` (AWS's error type, Google's status word),
``stream_error`` (an exception message in a Bedrock stream: ``throttlingException``...),
``finish_reason`` (Bedrock's ``stopReason``: ``guardrail_intervened`` adds the guardrail's
trace), ``cut_after``, ``chunk_delay``, ``delay``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import itertools
import re
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from msgflux._transport.eventstream import encode_message

if TYPE_CHECKING:
    from aiohttp import web

    from tests.upstream import Recorded, Reply, Upstream

__all__ = [
    "AUTH_ROUTES",
    "ROUTES",
    "VENDORS",
    "CloudState",
    "ServiceAccount",
    "is_stream",
    "match",
]

VENDORS = ("bedrock", "vertex")
ROUTES = (
    "converse",
    "converse_stream",
    "invoke",
    "invoke_stream",
    "bedrock_count_tokens",
    "vertex_generate_content",
    "vertex_stream_generate_content",
    "vertex_predict",
    "vertex_raw_predict",
    "vertex_stream_raw_predict",
)
AUTH_ROUTES = ("oauth_token", "sts_token", "aws_credentials", "imds", "gce_metadata")
"""Credential services: answered at once, never from the scripted replies, not recorded in
:attr:`Upstream.requests` (their own counts are in :class:`CloudState`)."""

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""The audience google-auth's service-account JWTs name, whatever their ``token_uri``."""

_BEDROCK = re.compile(
    r"/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream|count-tokens)"
)
_BEDROCK_ROUTES = {
    "converse": "converse",
    "converse-stream": "converse_stream",
    "invoke": "invoke",
    "invoke-with-response-stream": "invoke_stream",
    "count-tokens": "bedrock_count_tokens",
}
_VERTEX = re.compile(
    r"/v1/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/([^/:]+):(\w+)"
)
_VERTEX_ROUTES = {
    ("google", "generateContent"): "vertex_generate_content",
    ("google", "streamGenerateContent"): "vertex_stream_generate_content",
    ("google", "predict"): "vertex_predict",
    ("anthropic", "rawPredict"): "vertex_raw_predict",
    ("anthropic", "streamRawPredict"): "vertex_stream_raw_predict",
}
_STREAMS = ("converse_stream", "invoke_stream", "vertex_stream_generate_content")


def match(method: str, path: str) -> tuple[str, str, str | None] | None:
    """``(route, vendor, model)`` of a cloud path (``path`` as received, still encoded)."""
    if method == "POST" and path == "/token":
        return "oauth_token", "google_oauth", None
    if method == "POST" and path == "/sts/token":
        return "sts_token", "google_oauth", None
    if method == "GET" and path == "/aws/credentials":
        return "aws_credentials", "aws_credentials", None
    if (method, path) == ("PUT", "/latest/api/token") or (
        method == "GET" and path.startswith("/latest/meta-data/")
    ):
        return "imds", "aws_credentials", None
    if method == "GET" and (path == "/" or path.startswith("/computeMetadata/v1/")):
        return "gce_metadata", "google_oauth", None
    if method != "POST":
        return None
    found = _BEDROCK.fullmatch(path)
    if found is not None:
        return _BEDROCK_ROUTES[found.group(2)], "bedrock", unquote(found.group(1))
    found = _VERTEX.fullmatch(path)
    if found is not None:
        route = _VERTEX_ROUTES.get((found.group(3), found.group(5)))
        if route is not None:
            return route, "vertex", unquote(found.group(4))
    return None


def is_stream(route: str, payload: Any) -> bool:
    if route in _STREAMS:
        return True
    return route == "vertex_stream_raw_predict"


# -- state ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class ServiceAccount:
    """A service account the token endpoint knows: its JSON key file's content (``info``)."""

    email: str
    info: dict[str, Any]
    public_key: Any


@dataclasses.dataclass
class AWSKey:
    secret: str
    token: str | None = None
    revoked: bool = False


class CloudState:
    """What the cloud services know: keys, service accounts, issued tokens, and counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.aws_keys: dict[str, AWSKey] = {}
        self.bedrock_api_keys: set[str] = set()
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.tokens: dict[str, float] = {}
        """Issued Google access tokens -> their expiry (``time.time()``)."""
        self.token_lifetime = 3600
        self.token_requests = 0
        self.token_delay = 0.0
        """Seconds the token endpoint takes to answer (a slow refresh)."""
        self.container_lifetime = 3600.0
        self.container_requests = 0
        """Fetches of keys from the container endpoint or the instance role, in all."""
        self.imds_tokens: set[str] = set()
        self.imds_role = "bedrock-instance-role"
        self.gce_project = "gce-project"
        self.gce_email = "default-compute@gce-project.iam.gserviceaccount.com"
        self.federated_subjects: dict[str, str] = {}
        """Subject tokens of workload identity federation -> the pool's audience."""
        self.gce_requests: list[str] = []
        """The metadata server paths asked, in order (the ping is ``/``)."""
        self.last_mismatch = ""
        """What AWS adds to a signature mismatch's message: the canonical request and the
        string to sign it expected."""
        self.signed_with: list[str] = []
        """The access key id of each SigV4 request that verified, in order."""
        self._counter = itertools.count(1)

    def add_aws_key(self, key_id: str, secret: str, token: str | None = None) -> None:
        with self._lock:
            self.aws_keys[key_id] = AWSKey(secret, token)

    def revoke_aws_key(self, key_id: str) -> None:
        with self._lock:
            self.aws_keys[key_id].revoked = True

    def mint_aws_key(self) -> tuple[str, str, str]:
        """New temporary keys ``(key id, secret, session token)``, known from now on."""
        n = next(self._counter)
        key_id = f"ASIAFAKE{n:08d}"
        secret = f"tmp-secret-{n}-{secrets.token_hex(8)}"
        token = f"session-token-{n}-{secrets.token_hex(8)}"
        self.add_aws_key(key_id, secret, token)
        return key_id, secret, token

    def add_service_account(
        self, token_uri: str, project: str = "test-project", *, new_key: bool = False
    ) -> ServiceAccount:
        """A new service account whose JSON key names ``token_uri``; its RSA key is made here
        (once per process, unless ``new_key``: making one takes a while on a busy machine)."""
        key = _rsa_key(new_key)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        n = next(self._counter)
        email = f"sa-{n}@{project}.iam.gserviceaccount.com"
        info = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": f"key-{n}-{secrets.token_hex(4)}",
            "private_key": pem,
            "client_email": email,
            "client_id": str(100000 + n),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }
        account = ServiceAccount(email, info, key.public_key())
        with self._lock:
            self.service_accounts[email] = account
        return account

    def issue_token(self) -> str:
        token = f"ya29.fake-{next(self._counter)}-{secrets.token_hex(12)}"
        with self._lock:
            self.tokens[token] = time.time() + self.token_lifetime
        return token

    def token_valid(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and time.time() < expiry


# -- credential services --------------------------------------------------------------------------
_KEYS: list[Any] = []


def _rsa_key(new: bool) -> Any:
    if new or not _KEYS:
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _KEYS[-1]
    return _KEYS[0]


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _oauth(state: CloudState, body: bytes, token_uri: str) -> tuple[int, dict[str, Any]]:
    """Google's token endpoint for the JWT-bearer grant: ``(status, JSON)``."""
    state.token_requests += 1
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
        return 400, {"error": "unsupported_grant_type"}
    try:
        head, claims_part, signature = form["assertion"].split(".")
        header = orjson.loads(_b64url(head))
        claims = orjson.loads(_b64url(claims_part))
    except (KeyError, ValueError):
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
    account = state.service_accounts.get(claims.get("iss"))
    if header.get("alg") != "RS256" or account is None:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT issuer."}
    try:
        account.public_key.verify(
            _b64url(signature),
            f"{head}.{claims_part}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    now = time.time()
    if claims.get("aud") not in (token_uri, GOOGLE_TOKEN_AUDIENCE):
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT audience."}
    if not (claims.get("iat", 0) <= now + 300 and claims.get("exp", 0) > now):
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: expired."}
    if "cloud-platform" not in str(claims.get("scope")):
        return 400, {"error": "invalid_scope"}
    token = state.issue_token()
    return 200, {"access_token": token, "expires_in": state.token_lifetime, "token_type": "Bearer"}


_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def _sts(state: CloudState, body: bytes) -> tuple[int, dict[str, Any]]:
    """Google's STS token exchange (workload identity federation): ``(status, JSON)``."""
    state.token_requests += 1
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    if form.get("grant_type") != _TOKEN_EXCHANGE:
        return 400, {"error": "unsupported_grant_type"}
    audience = state.federated_subjects.get(form.get("subject_token", ""))
    if audience is None or form.get("audience") != audience:
        return 400, {"error": "invalid_grant", "error_description": "Invalid subject token."}
    if "cloud-platform" not in form.get("scope", ""):
        return 400, {"error": "invalid_scope"}
    return 200, {
        "access_token": state.issue_token(),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": state.token_lifetime,
    }


def _container_credentials(state: CloudState) -> dict[str, Any]:
    """New temporary keys (the previous ones revoked), as ECS's credentials endpoint gives."""
    with state._lock:
        state.container_requests += 1
        previous = [k for k, v in state.aws_keys.items() if k.startswith("ASIAFAKE")]
    for key_id in previous:
        state.revoke_aws_key(key_id)
    key_id, secret, token = state.mint_aws_key()
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=state.container_lifetime
    )
    return {
        "AccessKeyId": key_id,
        "SecretAccessKey": secret,
        "Token": token,
        "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _imds(
    state: CloudState, method: str, path: str, headers: Any
) -> tuple[int, str | dict[str, Any]]:
    """EC2's instance metadata service, IMDSv2 only: ``(status, text or JSON)``."""
    if method == "PUT":
        if not headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
            return 400, "Missing TTL"
        token = f"imds-{secrets.token_hex(8)}"
        state.imds_tokens.add(token)
        return 200, token
    if headers.get("x-aws-ec2-metadata-token") not in state.imds_tokens:
        return 401, "Unauthorized"
    prefix = "/latest/meta-data/iam/security-credentials/"
    if path == prefix:
        return 200, state.imds_role
    if path == prefix + state.imds_role:
        keys = _container_credentials(state)
        return 200, {"Code": "Success", "Type": "AWS-HMAC", **keys}
    return 404, "Not Found"


def _gce_metadata(
    state: CloudState, path: str, query: Any, headers: Any
) -> tuple[int, str | dict[str, Any]]:
    """Google's metadata server: ``(status, text or JSON)``."""
    state.gce_requests.append(path)
    if headers.get("metadata-flavor") != "Google":
        return 403, "Missing Metadata-Flavor: Google"
    if path == "/":
        return 200, "ok"
    accounts = "/computeMetadata/v1/instance/service-accounts/"
    if path == "/computeMetadata/v1/project/project-id":
        return 200, state.gce_project
    if path in (f"{accounts}default/", f"{accounts}{state.gce_email}/"):
        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        return 200, {"aliases": ["default"], "email": state.gce_email, "scopes": scopes}
    if path in (f"{accounts}default/token", f"{accounts}{state.gce_email}/token"):
        if "cloud-platform" not in str(query.get("scopes", "cloud-platform")):
            return 400, "scopes"
        token = state.issue_token()
        return 200, {
            "access_token": token,
            "expires_in": state.token_lifetime,
            "token_type": "Bearer",
        }
    return 404, "Not Found"


async def serve_auth(up: Upstream, request: web.Request, route: str) -> web.Response:
    """Answer a credential service's request (never from the scripted replies)."""
    import asyncio

    from aiohttp import web

    state = up.cloud
    if route == "oauth_token":
        if state.token_delay:
            await asyncio.sleep(state.token_delay)
        status, body = _oauth(state, await request.read(), f"{up.url}/token")
        return web.json_response(body, status=status)
    if route == "sts_token":
        status, body = _sts(state, await request.read())
        return web.json_response(body, status=status)
    if route in ("imds", "gce_metadata"):
        headers = {k.lower(): v for k, v in request.headers.items()}
        if route == "imds":
            status, answer = _imds(state, request.method, request.path, headers)
            extra: dict[str, str] = {}
        else:
            status, answer = _gce_metadata(state, request.path, request.query, headers)
            extra = {"Metadata-Flavor": "Google"}
        if isinstance(answer, dict):
            return web.json_response(answer, status=status, headers=extra)
        return web.Response(text=answer, status=status, headers=extra)
    return web.json_response(_container_credentials(state))


# -- auth of the APIs -----------------------------------------------------------------------------
_AWS_403 = {
    "signature": (
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check "
        "your AWS Secret Access Key and signing method. Consult the service documentation for "
        "details.",
    ),
    "unknown": (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    "expired": ("ExpiredTokenException", "The security token included in the request is expired"),
    "bearer": (
        "UnrecognizedClientException",
        "Invalid API Key format: Must start with pre-defined prefix",
    ),
}
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})"
)


def verify_sigv4(
    state: CloudState, method: str, raw_path: str, headers: dict[str, str], body: bytes
) -> str | None:
    """None when the request's SigV4 signature verifies, else which 403 it gets."""
    found = _AUTH.fullmatch(headers.get("authorization", ""))
    if found is None:
        return "signature"
    key_id, day, region, service, signed, signature = found.groups()
    key = state.aws_keys.get(key_id)
    if key is None:
        return "unknown"
    if key.revoked:
        return "expired"
    if key.token is not None and headers.get("x-amz-security-token") != key.token:
        return "unknown"
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        return "signature"
    now = datetime.datetime.now(datetime.timezone.utc)
    if abs((now - when).total_seconds()) > 900 or not amz_date.startswith(day):
        return "signature"
    names = signed.split(";")
    if "host" not in names or any(n not in headers for n in names):
        return "signature"
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{raw_path}",
        data=body,
        headers={n: headers[n] for n in names},
    )
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(key_id, key.secret, key.token), service, region)
    canonical = auth.canonical_request(request)
    to_sign = auth.string_to_sign(request, canonical)
    expected = auth.signature(to_sign, request)
    if not secrets.compare_digest(expected, signature):
        # AWS tells what it signed: the signed headers' values (the session token) included
        state.last_mismatch = (
            f"\n\nThe Canonical String for this request should have been\n'{canonical}'"
            f"\n\nThe String-to-Sign should have been\n'{to_sign}'\n"
        )
        return "signature"
    state.signed_with.append(key_id)
    return None


def aws_error(status: int, kind: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    """AWS's error answer: ``{"message"}`` and the type in ``x-amzn-ErrorType``."""
    headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return status, orjson.dumps({"message": message}), headers


def _bedrock_auth(
    up: Upstream, rec: Recorded, raw_path: str
) -> tuple[int, bytes, dict[str, str]] | None:
    auth = rec.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        if auth[7:] in up.cloud.bedrock_api_keys:
            return None
        why = "bearer"
    else:
        why = verify_sigv4(up.cloud, rec.method, raw_path, rec.headers, rec.body) or ""
        if not why:
            return None
    rec.invalid = f"auth: {why}"
    kind, message = _AWS_403[why]
    if why == "signature":
        message += up.cloud.last_mismatch
    return aws_error(403, kind, message)


def _vertex_auth(up: Upstream, rec: Recorded) -> tuple[int, bytes, dict[str, str]] | None:
    auth = rec.headers.get("authorization", "")
    if auth.startswith("Bearer ") and up.cloud.token_valid(auth[7:]):
        return None
    rec.invalid = "auth: no valid OAuth token"
    error = {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
        "token, login cookie or other valid authentication credential.",
        "status": "UNAUTHENTICATED",
    }
    return 401, orjson.dumps({"error": error}), {}


# -- request checks -------------------------------------------------------------------------------
class Invalid(Exception):
    pass


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise Invalid(message)


_CONVERSE_FIELDS = frozenset(
    (
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    )
)
_BLOCKS = frozenset(
    (
        "text",
        "image",
        "document",
        "video",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
        "citationsContent",
    )
)
_INFERENCE = frozenset(("maxTokens", "temperature", "topP", "stopSequences"))


def _check_block(block: Any, where: str, role: str) -> None:
    _need(isinstance(block, dict) and len(block) == 1, f"{where}: a block holds exactly one member")
    (kind,) = block
    _need(kind in _BLOCKS, f"extraneous key [{kind}] is not permitted")
    value = block[kind]
    if kind == "text":
        _need(isinstance(value, str) and value.strip() != "", f"{where}.text: blank text")
    elif kind in ("image", "document"):
        _need(isinstance(value, dict) and "format" in value, f"{where}.{kind}.format: required")
        data = value.get("source", {}).get("bytes")
        _need(isinstance(data, str), f"{where}.{kind}.source.bytes: required")
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise Invalid(f"{where}.{kind}.source.bytes: invalid base64") from None
        if kind == "document":
            _need(
                bool(re.fullmatch(r"[A-Za-z0-9 \-()\[\]]+", value.get("name") or "")),
                f"{where}.document.name",
            )
    elif kind == "toolUse":
        _need(role == "assistant", f"{where}: toolUse belongs to assistant turns")
        _need(
            isinstance(value.get("toolUseId"), str) and isinstance(value.get("name"), str),
            f"{where}.toolUse: toolUseId and name required",
        )
        _need(isinstance(value.get("input"), dict), f"{where}.toolUse.input: an object")
    elif kind == "toolResult":
        _need(role == "user", f"{where}: toolResult belongs to user turns")
        _need(isinstance(value.get("toolUseId"), str), f"{where}.toolResult.toolUseId: required")
        for j, inner in enumerate(value.get("content") or ()):
            _need(
                isinstance(inner, dict)
                and len(inner) == 1
                and next(iter(inner)) in ("text", "json", "image", "document"),
                f"{where}.toolResult.content[{j}]",
            )
    elif kind == "reasoningContent":
        _need(role == "assistant", f"{where}: reasoning belongs to assistant turns")


def check_converse(body: Any) -> None:
    """What Bedrock's validation refuses in a Converse body."""
    _need(isinstance(body, dict), "the body must be a JSON object")
    for name in body:
        _need(name in _CONVERSE_FIELDS, f"extraneous key [{name}] is not permitted")
    messages = body.get("messages")
    _need(isinstance(messages, list) and bool(messages), "messages: required")
    _need(messages[0].get("role") == "user", "A conversation must start with a user message.")
    uses = False
    previous = None
    for i, message in enumerate(messages):
        role = message.get("role")
        _need(role in ("user", "assistant"), f"messages.{i}.role")
        _need(
            role != previous,
            "A conversation must alternate between user and assistant roles.",
        )
        previous = role
        content = message.get("content")
        _need(isinstance(content, list) and bool(content), f"messages.{i}.content: required")
        for j, block in enumerate(content):
            _check_block(block, f"messages.{i}.content.{j}", role)
            uses = uses or "toolUse" in block or "toolResult" in block
    system = body.get("system")
    if system is not None:
        _need(isinstance(system, list), "system: a list of blocks")
        for j, block in enumerate(system):
            _need(
                isinstance(block, dict)
                and len(block) == 1
                and next(iter(block)) in ("text", "cachePoint", "guardContent"),
                f"system.{j}",
            )
    config = body.get("inferenceConfig")
    if config is not None:
        for name in config:
            _need(name in _INFERENCE, f"extraneous key [{name}] is not permitted")
    tools = body.get("toolConfig")
    _need(
        not uses or isinstance(tools, dict),
        "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
    )
    if isinstance(tools, dict):
        for j, tool in enumerate(tools.get("tools") or ()):
            spec = tool.get("toolSpec")
            if spec is None:
                _need("cachePoint" in tool, f"toolConfig.tools.{j}")
                continue
            _need(isinstance(spec.get("name"), str), f"toolConfig.tools.{j}.toolSpec.name")
            _need(
                isinstance(spec.get("inputSchema", {}).get("json"), dict),
                f"toolConfig.tools.{j}.inputSchema.json",
            )
        choice = tools.get("toolChoice")
        _need(
            choice is None
            or (
                isinstance(choice, dict)
                and len(choice) == 1
                and next(iter(choice)) in ("auto", "any", "tool")
            ),
            "toolConfig.toolChoice",
        )


_BEDROCK_BETAS = {
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
    "compact-2026-01-12",
}
"""The betas AWS documents for Claude's Messages API on Bedrock: any other is a 400 ``invalid
beta flag`` (what Claude Code's first-party betas, ``claude-code-20250219``..., get)."""


_VERTEX_BETAS = {
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
    "web-search-2025-03-05",
    "compact-2026-01-12",
}
"""The betas Claude on Vertex takes; any other is a 400 (``Unexpected value(s)``)."""


def _check_messages(rec: Recorded, body: Any, version: str) -> None:
    """Claude's Messages body as Bedrock or Vertex take it: checked as the Messages API's."""
    from tests import upstream_vendors as vendors

    _need(isinstance(body, dict), "the body must be a JSON object")
    _need(body.get("anthropic_version") == version, f"anthropic_version: must be {version}")
    _need("model" not in body, "model: Extra inputs are not permitted")
    betas = body.get("anthropic_beta")
    _need(
        betas is None or (isinstance(betas, list) and all(isinstance(b, str) for b in betas)),
        "anthropic_beta: a list of strings",
    )
    if version == "bedrock-2023-05-31" and betas:
        _need(all(b in _BEDROCK_BETAS for b in betas), "invalid beta flag")
    header = rec.headers.get("anthropic-beta")
    if version == "vertex-2023-10-16" and header:
        unknown = [b.strip() for b in header.split(",") if b.strip() not in _VERTEX_BETAS]
        _need(
            not unknown,
            f"Unexpected value(s) {', '.join(f'`{b}`' for b in unknown)} for the "
            "`anthropic-beta` header.",
        )
    shadow = dataclasses.replace(
        rec,
        route="messages",
        vendor="anthropic",
        headers={"x-api-key": "cloud", "anthropic-version": "2023-06-01"},
        json={
            "model": rec.model,
            **{k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")},
        },
    )
    refused = vendors.validate(shadow)
    if refused is not None:
        raise Invalid(refused[1])


def _check_gemini(rec: Recorded) -> None:
    from tests import upstream_vendors as vendors

    route = (
        "stream_generate_content"
        if rec.route == "vertex_stream_generate_content"
        else "generate_content"
    )
    shadow = dataclasses.replace(
        rec, route=route, vendor="gemini", headers={"x-goog-api-key": "cloud"}
    )
    refused = vendors.validate(shadow)
    if refused is not None:
        raise Invalid(refused[1])


def _check_predict(body: Any) -> None:
    _need(isinstance(body, dict) and isinstance(body.get("instances"), list), "instances: required")
    for i, instance in enumerate(body["instances"]):
        _need(
            isinstance(instance, dict) and isinstance(instance.get("content"), str),
            f"instances[{i}].content",
        )
        for key in instance:
            _need(key in ("content", "task_type", "title"), f"instances[{i}]: unknown {key}")
    for key in body.get("parameters") or {}:
        _need(key in ("outputDimensionality", "autoTruncate"), f"parameters: unknown {key}")


def check(rec: Recorded) -> None:
    """Raise :class:`Invalid` when the vendor would refuse ``rec``'s body."""
    body = rec.json
    if rec.route in ("converse", "converse_stream"):
        check_converse(body)
    elif rec.route == "bedrock_count_tokens":
        invoke = (body.get("input") or {}).get("invokeModel") if isinstance(body, dict) else None
        _need(
            isinstance(invoke, dict) and isinstance(invoke.get("body"), str),
            "input.invokeModel.body",
        )
        inner = orjson.loads(base64.b64decode(invoke["body"]))
        _check_messages(dataclasses.replace(rec, json=inner), inner, "bedrock-2023-05-31")
    elif rec.route in ("invoke", "invoke_stream"):
        if "titan-embed" in (rec.model or ""):
            _need(
                isinstance(body, dict) and isinstance(body.get("inputText"), str),
                "inputText: required",
            )
            for key in body:
                _need(
                    key in ("inputText", "dimensions", "normalize", "embeddingTypes"),
                    f"extraneous key [{key}]",
                )
        elif "cohere.embed" in (rec.model or ""):
            _need(isinstance(body, dict) and isinstance(body.get("texts"), list), "texts: required")
            _need(isinstance(body.get("input_type"), str), "input_type: required")
        else:
            _check_messages(rec, body, "bedrock-2023-05-31")
            _need("stream" not in body, "stream: Extra inputs are not permitted")
    elif rec.route in ("vertex_raw_predict", "vertex_stream_raw_predict"):
        _check_messages(rec, body, "vertex-2023-10-16")
        if rec.route == "vertex_stream_raw_predict":
            _need(body.get("stream") is True, "streamRawPredict needs stream: true")
    elif rec.route == "vertex_predict":
        _check_predict(body)
    else:
        _check_gemini(rec)


# -- answers --------------------------------------------------------------------------------------
_AWS_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _padded(payload: dict[str, Any], n: int) -> bytes:
    """A payload with Bedrock's ``p`` padding field (it hides the size of each event)."""
    return orjson.dumps({**payload, "p": _PAD[: 5 + n % 40]})


def _event(kind: str, payload: dict[str, Any], n: int = 0) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, _padded(payload, n))


def _exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


def _guardrail_trace() -> dict[str, Any]:
    return {
        "guardrail": {
            "inputAssessment": {
                "gr-test": {
                    "contentPolicy": {
                        "filters": [{"type": "VIOLENCE", "confidence": "HIGH", "action": "BLOCKED"}]
                    }
                }
            },
            "actionReason": "Guardrail blocked.",
        }
    }


def _converse_blocks(rec: Recorded, ans: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if ans.reasoning:
        text = {"text": "".join(ans.reasoning), "signature": f"sig-{rec.index}"}
        blocks.append({"reasoningContent": {"reasoningText": text}})
    if ans.text is not None:
        blocks.append({"text": ans.text})
    for i, call in enumerate(ans.calls):
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": f"tooluse_{rec.index}_{i}",
                    "name": call["function"]["name"],
                    "input": orjson.loads(call["function"]["arguments"]),
                }
            }
        )
    return blocks


def _converse_usage(ans: Any, reply: Reply, output: int) -> dict[str, Any]:
    base = {
        "inputTokens": ans.prompt_words,
        "outputTokens": output,
        "totalTokens": ans.prompt_words + output,
    }
    return {**base, **dict(reply.usage)} if reply.usage is not None else base


def _stop(reply: Reply, ans: Any) -> str:
    return reply.finish_reason or ("tool_use" if ans.calls else "end_turn")


def converse_answer(rec: Recorded, reply: Reply, ans: Any) -> dict[str, Any]:
    stop = _stop(reply, ans)
    output = len(ans.pieces) + len(ans.calls) + len(ans.reasoning)
    out: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": _converse_blocks(rec, ans)}},
        "stopReason": stop,
        "usage": _converse_usage(ans, reply, output),
        "metrics": {"latencyMs": 42},
    }
    if stop == "guardrail_intervened":
        out["output"]["message"]["content"] = [{"text": "Sorry, the model cannot answer this."}]
        out["trace"] = _guardrail_trace()
    return out


def converse_frames(rec: Recorded, reply: Reply, ans: Any) -> list[tuple[bytes, bool]]:
    """The event-stream messages of a ``converse-stream`` answer, each with whether it
    carries content."""
    frames: list[tuple[bytes, bool]] = [(_event("messageStart", {"role": "assistant"}), False)]
    index = 0
    n = itertools.count()
    if ans.reasoning:
        for piece in ans.reasoning:
            delta = {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": piece}}}
            frames.append((_event("contentBlockDelta", delta, next(n)), True))
        signature = {"reasoningContent": {"signature": f"sig-{rec.index}"}}
        frames.append(
            (_event("contentBlockDelta", {"contentBlockIndex": index, "delta": signature}), False)
        )
        frames.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    if ans.text is not None:
        for piece in ans.pieces:
            delta = {"contentBlockIndex": index, "delta": {"text": piece}}
            frames.append((_event("contentBlockDelta", delta, next(n)), True))
        frames.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    for i, call in enumerate(ans.calls):
        start = {
            "toolUse": {"toolUseId": f"tooluse_{rec.index}_{i}", "name": call["function"]["name"]}
        }
        frames.append(
            (_event("contentBlockStart", {"contentBlockIndex": index, "start": start}), True)
        )
        args = call["function"]["arguments"]
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}
            frames.append((_event("contentBlockDelta", delta, next(n)), True))
        frames.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
        index += 1
    stop = _stop(reply, ans)
    frames.append((_event("messageStop", {"stopReason": stop}), False))
    output = len(ans.pieces) + len(ans.calls) + len(ans.reasoning)
    metadata: dict[str, Any] = {
        "usage": _converse_usage(ans, reply, output),
        "metrics": {"latencyMs": 42},
    }
    if stop == "guardrail_intervened":
        metadata["trace"] = _guardrail_trace()
    frames.append((_event("metadata", metadata), False))
    return frames


def invoke_frames(sse_frames: list[tuple[bytes, bool]]) -> list[tuple[bytes, bool]]:
    """Claude's SSE events as Bedrock streams them: each event's JSON, base64, in a ``chunk``
    message (``message_stop`` with Bedrock's invocation metrics)."""
    out = []
    for i, (frame, content) in enumerate(sse_frames):
        data = frame.split(b"data: ", 1)[1].strip()
        event = orjson.loads(data)
        if event.get("type") == "message_stop":
            event["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": 3,
                "outputTokenCount": 4,
                "invocationLatency": 42,
                "firstByteLatency": 7,
            }
            data = orjson.dumps(event)
        out.append((_event("chunk", {"bytes": base64.b64encode(data).decode()}, i), content))
    return out


def _embeddings(rec: Recorded, reply: Reply) -> tuple[dict[str, Any], int]:
    from tests.upstream import _vector

    body = rec.json
    if rec.route == "vertex_predict":
        dim = (body.get("parameters") or {}).get("outputDimensionality") or reply.embedding_dim
        predictions = [
            {
                "embeddings": {
                    "values": list(reply.embedding)
                    if reply.embedding
                    else _vector(i["content"], dim),
                    "statistics": {"token_count": len(i["content"].split()), "truncated": False},
                }
            }
            for i in body["instances"]
        ]
        return {"predictions": predictions}, 0
    if "cohere" in (rec.model or ""):
        dim = body.get("output_dimension") or reply.embedding_dim
        vectors = [
            list(reply.embedding) if reply.embedding else _vector(t, dim) for t in body["texts"]
        ]
        tokens = sum(len(t.split()) for t in body["texts"])
        embeddings: Any = {"float": vectors} if body.get("embedding_types") else vectors
        return {
            "id": f"emb-{rec.index}",
            "embeddings": embeddings,
            "texts": body["texts"],
            "response_type": "embeddings_floats",
        }, tokens
    dim = body.get("dimensions") or reply.embedding_dim
    text = body["inputText"]
    tokens = len(text.split())
    vector = list(reply.embedding) if reply.embedding else _vector(text, dim)
    return {"embedding": vector, "inputTextTokenCount": tokens}, tokens


def error_answer(rec: Recorded, reply: Reply) -> tuple[int, bytes, dict[str, str]]:
    """The vendor's error for a scripted ``status``."""
    from tests import upstream_vendors as vendors

    status = reply.status
    if rec.vendor == "bedrock":
        kind = reply.error_type or _AWS_TYPES.get(status, "InternalServerException")
        return aws_error(status, kind, reply.error or kind)
    shadow_vendor = (
        "anthropic"
        if "raw_predict" in rec.route and reply.error_type and reply.error_type.endswith("_error")
        else "gemini"
    )
    shadow = dataclasses.replace(rec, vendor=shadow_vendor)
    return status, vendors.error_body(shadow, status, reply.error, reply), {}


async def respond(
    up: Upstream, request: web.Request, rec: Recorded, reply: Reply, headers: dict[str, str]
) -> web.StreamResponse:
    """The cloud vendor's answer to ``rec`` (auth, checks, scripted errors, the answer)."""
    from tests import upstream as base
    from tests import upstream_vendors as vendors

    if rec.vendor == "bedrock":
        headers = {
            "x-amzn-RequestId": f"req-{rec.index}",
            **{k: v for k, v in headers.items() if k != "x-request-id"},
        }
        refused = _bedrock_auth(up, rec, request.raw_path)
    else:
        refused = _vertex_auth(up, rec)
    if refused is None:
        try:
            check(rec)
        except Invalid as exc:
            rec.invalid = str(exc)
            if rec.vendor == "bedrock":
                refused = aws_error(400, "ValidationException", str(exc))
            else:
                error = {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}
                refused = 400, orjson.dumps({"error": error}), {}
    if refused is None and reply.status >= 400:
        refused = error_answer(rec, reply)
    if refused is not None:
        status, data, extra = refused
        return await base._send(
            request, rec, reply, status, data, "application/json", {**headers, **extra}
        )
    if reply.body is not None or reply.json is not base._UNSET:
        data = (
            reply.body.encode()
            if isinstance(reply.body, str)
            else (reply.body or orjson.dumps(reply.json))
        )
        ctype = reply.content_type or "application/json"
        return await base._send(request, rec, reply, reply.status, data, ctype, headers)
    ans = base._vendor_answer_of(rec, reply)
    route = rec.route
    if route == "bedrock_count_tokens":
        inner = orjson.loads(base64.b64decode(rec.json["input"]["invokeModel"]["body"]))
        data = orjson.dumps({"inputTokens": max(base._prompt_words(inner), 1)})
        return await base._send(request, rec, reply, 200, data, "application/json", headers)
    if route in ("converse", "converse_stream"):
        if rec.stream:
            kind = reply.stream_error or "throttlingException"
            error = _exception(
                kind, reply.error or "Too many requests, please wait before trying again."
            )
            frames = converse_frames(rec, reply, ans)
            return await base._stream_frames(
                request,
                rec,
                reply,
                headers,
                frames,
                b"",
                error,
                content_type="application/vnd.amazon.eventstream",
            )
        data = orjson.dumps(converse_answer(rec, reply, ans))
        return await base._send(request, rec, reply, 200, data, "application/json", headers)
    if (route == "invoke" and ("embed" in (rec.model or ""))) or route == "vertex_predict":
        body, tokens = _embeddings(rec, reply)
        if rec.vendor == "bedrock":
            headers = {**headers, "X-Amzn-Bedrock-Input-Token-Count": str(tokens)}
        return await base._send(
            request, rec, reply, 200, orjson.dumps(body), "application/json", headers
        )
    structured = None if reply.structured is base._UNSET else reply.structured
    messages = route in (
        "invoke",
        "invoke_stream",
        "vertex_raw_predict",
        "vertex_stream_raw_predict",
    )
    shadow_route = (
        "messages"
        if messages
        else ("stream_generate_content" if rec.stream else "generate_content")
    )
    shadow = dataclasses.replace(
        rec,
        route=shadow_route,
        vendor="anthropic" if messages else "gemini",
        json={
            k: v for k, v in rec.json.items() if k not in ("anthropic_version", "anthropic_beta")
        },
    )
    if not rec.stream:
        data, ctype = vendors.answer(shadow, reply, ans, structured)
        return await base._send(request, rec, reply, 200, data, ctype, headers)
    frames, error = vendors.stream_frames(shadow, reply, ans, structured)
    if route == "invoke_stream":
        kind = reply.stream_error or "throttlingException"
        error = _exception(
            kind, reply.error or "Too many requests, please wait before trying again."
        )
        return await base._stream_frames(
            request,
            rec,
            reply,
            headers,
            invoke_frames(frames),
            b"",
            error,
            content_type="application/vnd.amazon.eventstream",
        )
    return await base._stream_frames(request, rec, reply, headers, frames, b"", error)


# -- test environments ---------------------------------------------------------------------------
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "BEDROCK_BASE_URL",
)
GCP_ENV = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "VERTEXAI_PROJECT",
    "VERTEX_PROJECT",
    "VERTEXAI_LOCATION",
    "VERTEX_LOCATION",
    "GOOGLE_CLOUD_LOCATION",
    "VERTEX_BASE_URL",
)


def isolate(monkeypatch: Any, tmp_path: Any) -> None:
    """No cloud credentials from the machine: botocore's and google-auth's chains see only
    what a test sets (no shared files, no instance or metadata service)."""
    for name in (*AWS_ENV, *GCP_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud-none"))
    # google-auth reads NO_GCE_CHECK once, when imported: the flag it set then, too
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)


def example_env(up: Upstream, directory: Any) -> dict[str, str]:
    """Environment variables that point Bedrock and Vertex examples at ``up`` (the docs'
    examples run as scripts): AWS keys the fake knows, a service account file whose token
    endpoint is the fake's, the base URLs, no instance or metadata service."""
    up.cloud.add_aws_key("AKIDEXAMPLES0001", "example-aws-secret-access-key")
    account = up.cloud.add_service_account(f"{up.url}/token", "my-project")
    key_file = Path(directory) / "example-service-account.json"
    key_file.write_text(orjson.dumps(account.info).decode())
    return {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLES0001",
        "AWS_SECRET_ACCESS_KEY": "example-aws-secret-access-key",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "BEDROCK_BASE_URL": up.url,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "VERTEX_BASE_URL": up.url,
        "NO_GCE_CHECK": "true",
    }
