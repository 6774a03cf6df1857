"""AWS credentials served over the container credentials protocol, on 127.0.0.1.

It is how ECS gives a task its role's credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI, with
AWS_CONTAINER_AUTHORIZATION_TOKEN as the Authorization header), and every AWS SDK reads it: botocore, the AWS
CLI and the Go SDK that Terraform's AWS provider is built on. The SDKs ask again before the credentials expire,
so refreshable credentials stay refreshable on the other side.

Two users: a task hands its identity to Terraform this way (devops/credentials.py: Terraform never needs a
profile, an MFA prompt or a credential helper of its own), and the sandbox's emulator gives the ECS tasks it
runs their task role's credentials as Fargate does (devops/emulator_tasks.py).
"""

from __future__ import annotations

import datetime
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from devops.masking import register_secret

HOST = "127.0.0.1"
# Credentials with no expiry (static keys) are served as expiring this far ahead: botocore's container
# provider requires an Expiration, and asks again when it nears.
STATIC_LIFETIME = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class ServedCredentials:
    access_key: str
    secret_key: str
    token: str | None = None
    expiry: datetime.datetime | None = None  # aware; None: static keys


class CredentialServer:
    """Serves ``fetch()`` (called on every request: the caller refreshes when it must) to whoever holds the
    token. One instance per identity; ``close`` stops it."""

    def __init__(self, fetch: Callable[[], ServedCredentials]):
        self.token = secrets.token_urlsafe(32)
        register_secret(self.token)
        self._fetch = fetch
        self._server = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="credential-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/credentials"

    def environment(self) -> dict[str, str]:
        """The variables that point an SDK at this server."""
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url, "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.token}

    def body(self) -> bytes:
        served = self._fetch()
        expiry = served.expiry or datetime.datetime.now(datetime.timezone.utc) + STATIC_LIFETIME
        # "Token" always: botocore's container provider (boto3, the AWS CLI) reads it unconditionally and fails
        # without it; an empty one is static keys to every SDK (no security-token header is sent).
        answer = {"AccessKeyId": served.access_key, "SecretAccessKey": served.secret_key,
                  "Token": served.token or "",
                  "Expiration": expiry.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        return json.dumps(answer).encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(server: CredentialServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not hmac.compare_digest(self.headers.get("Authorization", ""), server.token):
                return self._answer(401, {"code": "Unauthorized", "message": "missing or wrong authorization token"})
            try:
                body = server.body()
            except Exception as exc:  # noqa: BLE001 - the SDK on the other side gets the reason, in one line
                return self._answer(500, {"code": "CredentialsUnavailable", "message": str(exc).splitlines()[0]})
            self._send(200, body)

        def _answer(self, status: int, error: dict[str, str]) -> None:
            self._send(status, json.dumps(error).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # no access log on the task's stderr
            pass

    return Handler
