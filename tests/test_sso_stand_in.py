"""The SSO stand-in (devops/sandbox/sso_stand_in.py) through botocore itself, as a user's SSO profile uses
it: an sso-session in ~/.aws/config, the token `aws sso login` cached in ~/.aws/sso/cache, the SDK's SSO
credential provider trading it for role credentials of the emulator, and its refresh of a token about to
expire. Which identity AWS saw is the emulator's GetCallerIdentity."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import queue
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import botocore.credentials
import botocore.session
import botocore.tokens
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, TokenRetrievalError, UnauthorizedSSOTokenError

from devops.console import Console
from devops.sandbox import HOST
from devops.sandbox.aws_emulator import start_emulator
from devops.sandbox.processes import terminate_group
from devops.sandbox.sso_stand_in import SsoStandIn

pytestmark = pytest.mark.sandbox  # real services: the emulator and the stand-in this module starts

ACCOUNT, START_URL, REGION = "123456789012", "https://example.awsapps.com/start", "us-east-1"
CONFIG = f"""\
[profile dev]
sso_session = corp
sso_account_id = {ACCOUNT}
sso_role_name = DevAccess
region = {REGION}

[sso-session corp]
sso_start_url = {START_URL}
sso_region = {REGION}
sso_registration_scopes = sso:account:access
"""
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> str:
    record = start_emulator(tmp_path_factory.mktemp("emulator"), Console())
    yield f"http://{HOST}:{record['port']}"
    terminate_group(record["pid"])


@pytest.fixture
def sso(emulator):
    with SsoStandIn(emulator, REGION) as stand_in:
        yield stand_in


@pytest.fixture
def home(tmp_path, monkeypatch, emulator, sso) -> Path:
    """A user's HOME with the dev profile, the SDKs pointed at the stand-in and the emulator, no other identity."""
    home = tmp_path / "home"
    (home / ".aws" / "sso" / "cache").mkdir(parents=True)
    (home / ".aws" / "config").write_text(CONFIG)
    monkeypatch.setenv("HOME", str(home))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSO", sso.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSO_OIDC", sso.url)
    # botocore expands ~/.aws/sso/cache once, when it is imported: a HOME set later is not seen there.
    for provider in (botocore.tokens.SSOTokenProvider, botocore.credentials.SSOProvider):
        monkeypatch.setattr(provider, "_SSO_TOKEN_CACHE_DIR", str(home / ".aws" / "sso" / "cache"))
    return home


def token_file(home: Path) -> Path:
    """Where `aws sso login` caches the sso-session's token: the SHA-1 of the session's name."""
    return home / ".aws" / "sso" / "cache" / f"{hashlib.sha1(b'corp').hexdigest()}.json"


def timestamp(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_in(sso: SsoStandIn, home: Path, expires_in: datetime.timedelta | None = None) -> dict:
    """`aws sso login --use-device-code` with botocore's sso-oidc client: the device code flow, the user
    approving the code in a browser, and the token cached as the CLI caches it (``expires_in``: what the cache
    says of the token's life instead of the service's answer)."""
    oidc = botocore.session.Session().create_client("sso-oidc", config=Config(region_name=REGION,
                                                                               signature_version=UNSIGNED))
    client = oidc.register_client(clientName="botocore-client-corp", clientType="public",
                                  scopes=["sso:account:access"])
    device = oidc.start_device_authorization(clientId=client["clientId"], clientSecret=client["clientSecret"],
                                             startUrl=START_URL)
    grant = dict(grantType=DEVICE_GRANT, clientId=client["clientId"], clientSecret=client["clientSecret"],
                 deviceCode=device["deviceCode"])
    with pytest.raises(oidc.exceptions.AuthorizationPendingException) as pending:
        oidc.create_token(**grant)
    assert pending.value.response["error"] == "authorization_pending"
    assert device["verificationUriComplete"].startswith(sso.url)
    with urllib.request.urlopen(device["verificationUriComplete"]) as page:  # the user's browser
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    token = oidc.create_token(**grant)
    now = datetime.datetime.now(datetime.timezone.utc)
    cached = {"startUrl": START_URL, "region": REGION, "accessToken": token["accessToken"],
              "expiresAt": timestamp(now + (expires_in or datetime.timedelta(seconds=token["expiresIn"]))),
              "clientId": client["clientId"], "clientSecret": client["clientSecret"],
              "registrationExpiresAt": timestamp(datetime.datetime.fromtimestamp(client["clientSecretExpiresAt"],
                                                                                 datetime.timezone.utc)),
              "refreshToken": token["refreshToken"]}
    token_file(home).write_text(json.dumps(cached))
    return cached


def caller(profile: str = "dev") -> str:
    """Who AWS sees when an SDK signs in with ``profile`` (a new botocore session, as a new process)."""
    return botocore.session.Session(profile=profile).create_client("sts").get_caller_identity()["Arn"]


SSO_ROLE = re.compile(rf"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_DevAccess_[0-9a-f]{{16}}/"
                      r"developer@example\.com")


def test_a_cached_token_signs_the_profile_in_as_the_permission_sets_role(sso, home):
    cached = sign_in(sso, home)
    assert SSO_ROLE.fullmatch(caller())
    assert sso.calls["GetRoleCredentials"] == 1 and sso.calls["CreateToken"] == 2  # pending, then the token
    assert json.loads(token_file(home).read_text()) == cached  # nothing to refresh
    # The role is IAM Identity Center's, in the account, under its reserved path.
    role = caller().split("/")[1]
    iam = botocore.session.Session().create_client("iam", region_name=REGION, aws_access_key_id="test",
                                                   aws_secret_access_key="test")
    assert iam.get_role(RoleName=role)["Role"]["Path"] == "/aws-reserved/sso.amazonaws.com/"


def test_a_token_expiring_within_15_minutes_is_refreshed_and_cached_again(sso, home):
    cached = sign_in(sso, home, expires_in=datetime.timedelta(minutes=5))
    assert SSO_ROLE.fullmatch(caller())
    assert sso.calls["CreateToken"] == 3  # the refresh_token grant
    refreshed = json.loads(token_file(home).read_text())
    assert refreshed["accessToken"] != cached["accessToken"] and refreshed["refreshToken"] != cached["refreshToken"]
    assert refreshed["expiresAt"] > timestamp(datetime.datetime.now(datetime.timezone.utc)
                                              + datetime.timedelta(minutes=55))
    # A refresh token is good for one refresh.
    oidc = botocore.session.Session().create_client("sso-oidc", config=Config(region_name=REGION,
                                                                               signature_version=UNSIGNED))
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(grantType="refresh_token", clientId=cached["clientId"],
                          clientSecret=cached["clientSecret"], refreshToken=cached["refreshToken"])


def test_an_expired_token_whose_refresh_token_was_revoked_fails_in_botocore(sso, home):
    sign_in(sso, home, expires_in=datetime.timedelta(minutes=-1))
    sso.expire_access_tokens()
    sso.revoke_refresh_tokens()
    with pytest.raises(TokenRetrievalError, match="Token has expired and refresh failed"):
        caller()
    assert sso.calls["CreateToken"] == 3 and sso.calls["GetRoleCredentials"] == 0


def test_a_token_the_portal_no_longer_accepts_asks_for_aws_sso_login(sso, home):
    sign_in(sso, home)
    sso.expire_access_tokens()  # the session ended on the portal's side (signed out, or revoked)
    with pytest.raises(UnauthorizedSSOTokenError, match="run aws sso login"):
        caller()
    assert sso.calls["GetRoleCredentials"] == 1


def test_the_services_errors_are_the_models(sso, home):
    oidc = botocore.session.Session().create_client("sso-oidc", config=Config(region_name=REGION,
                                                                               signature_version=UNSIGNED))
    with pytest.raises(oidc.exceptions.InvalidClientException):
        oidc.start_device_authorization(clientId="nobody", clientSecret="nothing", startUrl=START_URL)
    portal = botocore.session.Session().create_client("sso", config=Config(region_name=REGION,
                                                                            signature_version=UNSIGNED))
    with pytest.raises(portal.exceptions.UnauthorizedException) as unauthorized:
        portal.get_role_credentials(roleName="DevAccess", accountId=ACCOUNT, accessToken="aoa-forged")
    assert unauthorized.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert isinstance(unauthorized.value, ClientError)


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_authorization_code_grant_checks_pkce(sso, home):
    oidc = botocore.session.Session().create_client("sso-oidc", config=Config(region_name=REGION,
                                                                               signature_version=UNSIGNED))
    client = oidc.register_client(clientName="botocore-client-corp", clientType="public",
                                  grantTypes=["authorization_code", "refresh_token"],
                                  redirectUris=["http://127.0.0.1/oauth/callback"], issuerUrl=START_URL)
    verifier = "a-code-verifier-of-the-cli-that-is-long-enough-0123456789"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    callback = "http://127.0.0.1:9/oauth/callback"  # the CLI's server; the test reads the redirect only

    def authorize() -> str:
        query = urllib.parse.urlencode({"response_type": "code", "client_id": client["clientId"],
                                        "redirect_uri": callback, "state": "s1", "code_challenge_method": "S256",
                                        "code_challenge": challenge, "scopes": "sso:account:access"})
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(NoRedirects).open(f"{sso.url}/authorize?{query}")
        assert redirect.value.code == 302
        location = urllib.parse.urlsplit(redirect.value.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == callback
        answer = urllib.parse.parse_qs(location.query)
        assert answer["state"] == ["s1"]
        return answer["code"][0]

    grant = dict(grantType="authorization_code", clientId=client["clientId"], clientSecret=client["clientSecret"],
                 redirectUri=callback)
    with pytest.raises(oidc.exceptions.InvalidGrantException):
        oidc.create_token(code=authorize(), codeVerifier="not-the-verifier-of-this-challenge-0123456789", **grant)
    code = authorize()
    token = oidc.create_token(code=code, codeVerifier=verifier, **grant)
    assert token["accessToken"].startswith("aoa") and token["expiresIn"] == 3600
    with pytest.raises(oidc.exceptions.InvalidGrantException):  # a code is good for one token
        oidc.create_token(code=code, codeVerifier=verifier, **grant)


def aws_cli_v2() -> str | None:
    aws = shutil.which("aws")
    if aws is None:
        return None
    version = subprocess.run([aws, "--version"], capture_output=True, text=True, timeout=60)
    return aws if (version.stdout + version.stderr).startswith("aws-cli/2.") else None


@pytest.mark.skipif(aws_cli_v2() is None, reason="needs AWS CLI v2 on PATH (`aws sso login`; v1 has no such "
                                                 "command); the toolbox image has it")
@pytest.mark.parametrize("flag, page", [("--use-device-code", "/device?user_code="), (None, "/authorize?")],
                         ids=["device-code", "authorization-code"])
def test_aws_sso_login_caches_a_token_botocore_signs_in_with(sso, home, flag, page):
    """`aws sso login --no-browser` prints the page to open (with --use-device-code: the device code's, else
    the authorization code flow's /authorize, which redirects to the CLI's own callback on 127.0.0.1)."""
    command = [aws_cli_v2(), "sso", "login", "--no-browser", "--profile", "dev", *([flag] if flag else [])]
    login = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in login.stdout], daemon=True).start()
    printed = []
    try:
        while not any(sso.url + page in line for line in printed):
            try:
                printed.append(lines.get(timeout=60))
            except queue.Empty:
                pytest.fail(f"no {page} URL of the stand-in printed within a minute:\n{''.join(printed)}")
        url = re.search(rf"{re.escape(sso.url + page)}\S+", "".join(printed)).group(0)
        with urllib.request.urlopen(url) as opened:  # the user opens it in a browser
            assert opened.status == 200
        assert login.wait(timeout=60) == 0, "".join(printed)
    finally:
        if login.poll() is None:
            login.kill()
    cached = json.loads(token_file(home).read_text())
    assert cached["startUrl"] == START_URL and cached["accessToken"].startswith("aoa") and cached["refreshToken"]
    assert SSO_ROLE.fullmatch(caller())
    assert sso.calls["RegisterClient"] == 1 and sso.calls["GetRoleCredentials"] == 1
