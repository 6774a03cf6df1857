"""The IAM Identity Center (SSO) stand-in: the two services an SSO profile signs in through, on 127.0.0.1.

- SSO OIDC (what `aws sso login` and botocore's token refresh call): RegisterClient, StartDeviceAuthorization
  and CreateToken with the device code grant (AuthorizationPendingException until the user approved the
  code), the authorization code grant with PKCE (`aws sso login` without --use-device-code) and the refresh
  token grant (a refresh token is good for one refresh, which gives a new one);
- the pages a browser opens, each standing for the user signing in on the portal and clicking "Allow":
  verificationUriComplete (/device?user_code=...) approves its code; /authorize redirects to the CLI's
  callback on 127.0.0.1 with an authorization code;
- the SSO portal's GetRoleCredentials (what botocore's SSO credential provider calls with the access
  token): credentials of the AWS emulator, assumed there by STS for the role IAM Identity Center keeps in an
  account for a permission set, ``AWSReservedSSO_<permission set>_<16 hex>`` under
  /aws-reserved/sso.amazonaws.com/ (created when missing), with the user's name as the session name:
  GetCallerIdentity with them shows that assumed role, as on AWS.

The SDKs and the AWS CLI v2 reach it through AWS_ENDPOINT_URL_SSO and AWS_ENDPOINT_URL_SSO_OIDC (both this
server's ``url``). Errors are the models': HTTP status, x-amzn-ErrorType, and OIDC's OAuth ``error``.

Left out: signing in itself (one user, who approves whatever is asked), account and permission set
assignments (every 12-digit account and role name is granted), ListAccounts, ListAccountRoles, Logout,
SlowDownException and rate limits.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import html
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import botocore.session
from botocore.exceptions import ClientError

from devops.emulator_tasks import CREDENTIALS as EMULATOR_CREDENTIALS

HOST = "127.0.0.1"
CODE_LIFETIME = 600  # seconds, a device or authorization code's, as AWS's
REGISTRATION_LIFETIME = 90 * 24 * 3600  # a client registration's, as AWS's
ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class ServiceError(Exception):
    """An error answer: its HTTP status (the model's), its shape's name and the body's fields."""

    def __init__(self, status: int, shape: str, **body: str) -> None:
        super().__init__(shape)
        self.status, self.shape, self.body = status, shape, body


def oauth_error(status: int, shape: str, error: str, description: str) -> ServiceError:
    return ServiceError(status, shape, error=error, error_description=description)


@dataclasses.dataclass
class Page:
    """A page for a browser (``location``: a redirect)."""
    text: str
    status: int = 200
    location: str = ""


class SsoStandIn:
    """``with SsoStandIn(emulator_url) as sso:`` (or ``start()``/``close()``); ``sso.url`` for both endpoint
    variables; ``calls``: the requests per operation ("Verify" and "Authorize": the browser's pages)."""

    def __init__(self, emulator_url: str, region: str = "us-east-1", token_lifetime: int = 3600,
                 user: str = "developer@example.com", port: int = 0) -> None:
        self.emulator_url, self.region, self.token_lifetime, self.user = emulator_url, region, token_lifetime, user
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, float]] = {}  # clientId -> clientSecret, expiry
        self._codes: dict[str, dict[str, Any]] = {}  # device or authorization code -> clientId, expiry, ...
        self._access: dict[str, float] = {}  # access token -> expiry
        self._refresh: dict[str, str] = {}  # refresh token -> clientId
        self._boto = botocore.session.Session()
        self._boto.set_credentials(EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                   EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        self._server = ThreadingHTTPServer((HOST, port), _handler(self))
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> SsoStandIn:
        threading.Thread(target=self._server.serve_forever, name="sso-stand-in", daemon=True).start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SsoStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What a test does to it besides the browser's part.

    def approve(self, user_code: str) -> bool:
        """The user approves ``user_code`` (as opening verificationUriComplete does); False: no such code."""
        with self._lock:
            for code in self._codes.values():
                if code.get("userCode") == user_code and code["expires"] > time.time():
                    code["approved"] = True
                    return True
        return False

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = dict.fromkeys(self._access, time.time())

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    # The operations: each takes the request's parameters (POST: the JSON body; GET: the query).

    def register_client(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("clientName") or not params.get("clientType"):
            raise oauth_error(400, "InvalidRequestException", "invalid_request", "clientName and clientType needed")
        client_id, secret, now = secrets.token_urlsafe(16), secrets.token_urlsafe(48), time.time()
        with self._lock:
            self._clients[client_id] = (secret, now + REGISTRATION_LIFETIME)
        return {"clientId": client_id, "clientSecret": secret, "clientIdIssuedAt": int(now),
                "clientSecretExpiresAt": int(now + REGISTRATION_LIFETIME)}

    def start_device_authorization(self, params: dict[str, Any]) -> dict[str, Any]:
        client_id = self._client(params["clientId"], params.get("clientSecret"))
        letters = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        user_code, device_code = f"{letters[:4]}-{letters[4:]}", secrets.token_urlsafe(32)
        self._new_code(device_code, clientId=client_id, userCode=user_code, approved=False)
        return {"deviceCode": device_code, "userCode": user_code, "verificationUri": f"{self.url}/device",
                "verificationUriComplete": f"{self.url}/device?user_code={user_code}",
                "expiresIn": CODE_LIFETIME, "interval": 1}

    def create_token(self, params: dict[str, Any]) -> dict[str, Any]:
        client_id, grant = self._client(params["clientId"], params.get("clientSecret")), params.get("grantType")
        invalid = oauth_error(400, "InvalidGrantException", "invalid_grant", f"Invalid grant provided ({grant})")
        with self._lock:
            if grant in (DEVICE_GRANT, "authorization_code"):
                key = params.get("deviceCode" if grant == DEVICE_GRANT else "code") or ""
                code = self._codes.get(key)
                if code is None or code["clientId"] != client_id or ("userCode" in code) != (grant == DEVICE_GRANT):
                    raise invalid
                if code["expires"] <= time.time():
                    raise oauth_error(400, "ExpiredTokenException", "expired_token", "The code has expired")
                if not code.get("approved", True):
                    raise oauth_error(400, "AuthorizationPendingException", "authorization_pending",
                                      "Authorization is still pending")
                verifier = hashlib.sha256((params.get("codeVerifier") or "").encode()).digest()
                if "challenge" in code and (code["challenge"], code["redirectUri"]) != (
                        base64.urlsafe_b64encode(verifier).rstrip(b"=").decode(), params.get("redirectUri")):
                    raise invalid
                del self._codes[key]  # good for one token
            elif grant == "refresh_token":
                if self._refresh.pop(params.get("refreshToken") or "", None) != client_id:
                    raise invalid
            else:
                raise oauth_error(400, "UnsupportedGrantTypeException", "unsupported_grant_type", str(grant))
            access, refresh = f"aoa{secrets.token_urlsafe(48)}", f"aor{secrets.token_urlsafe(48)}"
            self._access[access], self._refresh[refresh] = time.time() + self.token_lifetime, client_id
        return {"accessToken": access, "tokenType": "Bearer", "expiresIn": self.token_lifetime,
                "refreshToken": refresh}

    def get_role_credentials(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            valid = self._access.get(params["accessToken"], 0) > time.time()
        if not valid:
            raise ServiceError(401, "UnauthorizedException", message="Session token not found or invalid")
        account, role_name = params.get("account_id", ""), params.get("role_name", "")
        if not (account.isdigit() and len(account) == 12 and role_name):
            raise ServiceError(400, "InvalidRequestException", message="Invalid account_id or role_name")
        credentials = self._assume(account, role_name)
        return {"roleCredentials": {"accessKeyId": credentials["AccessKeyId"],
                                    "secretAccessKey": credentials["SecretAccessKey"],
                                    "sessionToken": credentials["SessionToken"],
                                    "expiration": int(credentials["Expiration"].timestamp() * 1000)}}

    def verify(self, params: dict[str, Any]) -> Page:
        code = params.get("user_code", "")
        if not code:
            return Page("Enter the code the AWS CLI shows: <form><input name=user_code></form>")
        if not self.approve(code):
            return Page(f"Unknown or expired code {html.escape(code)}", 400)
        return Page(f"Request approved ({html.escape(code)}): you can close this window.")

    def authorize(self, params: dict[str, Any]) -> Page:
        with self._lock:
            registered = self._clients.get(params.get("client_id", ""), ("", 0.0))[1] > time.time()
        callback = urlsplit(params.get("redirect_uri", ""))
        if not registered or params.get("response_type") != "code" or not params.get("code_challenge") or \
                params.get("code_challenge_method") != "S256" or (callback.scheme, callback.hostname) != ("http", HOST):
            return Page("Invalid authorization request", 400)
        code = secrets.token_urlsafe(32)
        self._new_code(code, clientId=params["client_id"], challenge=params["code_challenge"],
                       redirectUri=params["redirect_uri"])
        query = urlencode({"code": code, "state": params.get("state", "")})
        return Page("Request approved", 302, f"{params['redirect_uri']}?{query}")

    def _new_code(self, code: str, **fields: Any) -> None:
        with self._lock:
            self._codes[code] = {**fields, "expires": time.time() + CODE_LIFETIME}

    def _client(self, client_id: str, secret: str | None) -> str:
        with self._lock:
            known, expires = self._clients.get(client_id, ("", 0.0))
        if not known or not secrets.compare_digest(known, secret or "") or expires <= time.time():
            raise oauth_error(401, "InvalidClientException", "invalid_client", "Invalid client provided")
        return client_id

    def _assume(self, account: str, role_name: str) -> dict[str, Any]:
        """The permission set's role's credentials, assumed in the emulator in ``account`` (moto takes the
        account a request acts in from its x-moto-account-id header)."""
        suffix = hashlib.sha256(f"{account}/{role_name}".encode()).hexdigest()[:16]
        name = f"AWSReservedSSO_{role_name}_{suffix}"
        with self._lock:  # one botocore session: creating clients from it is not thread-safe
            iam, sts = (self._boto.create_client(service, region_name=self.region, endpoint_url=self.emulator_url)
                        for service in ("iam", "sts"))
        for client in (iam, sts):
            client.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__(
                "x-moto-account-id", account))
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
            "Principal": {"Federated": f"arn:aws:iam::{account}:saml-provider/AWSSSO_{suffix}_DO_NOT_DELETE"},
            "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}}]}
        try:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchEntity":
                raise
            arn = iam.create_role(RoleName=name, Path=ROLE_PATH,
                                  AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        return sts.assume_role(RoleArn=arn, RoleSessionName=self.user, DurationSeconds=3600)["Credentials"]


def _handler(stand_in: SsoStandIn) -> type[BaseHTTPRequestHandler]:
    operations = {("POST", "/client/register"): ("RegisterClient", stand_in.register_client),
                  ("POST", "/device_authorization"): ("StartDeviceAuthorization", stand_in.start_device_authorization),
                  ("POST", "/token"): ("CreateToken", stand_in.create_token),
                  ("GET", "/federation/credentials"): ("GetRoleCredentials", stand_in.get_role_credentials),
                  ("GET", "/device"): ("Verify", stand_in.verify),
                  ("GET", "/authorize"): ("Authorize", stand_in.authorize)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            name, operation = operations.get((self.command, parts.path), ("", None))
            if operation is None:
                return self._answer(404, {"message": f"no operation at {self.command} {parts.path}"})
            with stand_in._lock:
                stand_in.calls[name] += 1
            params: dict[str, Any] = {key: values[0] for key, values in parse_qs(parts.query).items()}
            params["accessToken"] = self.headers.get("x-amz-sso_bearer_token") or ""
            try:
                if self.command == "POST":
                    params = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                answer = operation(params)
            except ServiceError as error:
                return self._answer(error.status, error.body, error.shape)
            except (KeyError, TypeError, ValueError) as error:  # a required parameter missing, or malformed
                return self._answer(400, {"message": f"invalid request: {error}"}, "InvalidRequestException")
            if isinstance(answer, Page):
                page = f"<!doctype html><title>AWS access portal</title><p>{answer.text}</p>".encode()
                return self._answer(answer.status, page, location=answer.location)
            self._answer(200, answer)

        def _answer(self, status: int, body: dict[str, Any] | bytes, error: str = "", location: str = "") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if isinstance(body, bytes) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", secrets.token_hex(16))
            for header, value in (("x-amzn-ErrorType", error), ("Location", location)):
                if value:
                    self.send_header(header, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
