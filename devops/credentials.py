"""The caller's AWS identity: resolved once per task, as the AWS CLI resolves it, and shared by every AWS client
of the task and by the Terraform it runs.

- The standard provider chain and its precedence: keys in the environment win over AWS_PROFILE (botocore drops
  them when a profile is passed explicitly, so the profile is passed only when it did not come from
  AWS_PROFILE), then the profile's SSO session, assumed role, credential_process or keys, then a container's
  or an instance's credentials (an ECS task's role).
- Once per task: one botocore session per identity in the process; its credentials are fetched when the task
  first needs AWS (an assumed role's STS call, an MFA prompt, an SSO exchange happen there, once), and any
  failure is one line naming the profile and the fix.
- Cached as the AWS CLI caches them: assumed-role and SSO role credentials in ~/.aws/cli/cache (the same files
  and keys as the CLI's, so `aws` and the tasks share them: an MFA code serves every task until the role's
  session expires); the SSO token in ~/.aws/sso/cache, refreshed by botocore in its last 15 minutes.
- Terraform gets the same identity from a loopback container-credentials endpoint served by the task
  (devops/credential_server.py): refreshable credentials stay refreshable, and Terraform never needs a
  profile, an MFA prompt or a credential helper of its own.
"""

from __future__ import annotations

import datetime
import getpass
import os
import sys
import threading
from pathlib import Path
from typing import Any

import botocore.session
from botocore.credentials import JSONFileCache
from botocore.exceptions import (BotoCoreError, ClientError, CredentialRetrievalError, NoCredentialsError,
                                 ProfileNotFound, SSOError, TokenRetrievalError)

from devops import hints
from devops.config import Settings
from devops.credential_server import CredentialServer, ServedCredentials
from devops.errors import DevopsError
from devops.masking import last_line

# What decides which identity a session resolves: the same values, the same identity (and session).
IDENTITY_VARIABLES = (
    "HOME", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SSO", "AWS_ENDPOINT_URL_SSO_OIDC",
)
# Where the AWS CLI keeps assumed-role and SSO role credentials (awscli/customizations/assumerole.py).
CLI_CACHE = Path("~/.aws/cli/cache")
# The providers that take the CLI's cache (botocore's names).
CACHED_PROVIDERS = ("assume-role", "assume-role-with-web-identity", "sso")
# Variables Terraform must not see, so that it uses the task's endpoint: keys and profiles (which come before
# container credentials in every SDK's chain) and the files a profile is read from.
TERRAFORM_HIDDEN = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                    "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_ROLE_ARN")


class Identity:
    """A resolved identity: its botocore session (credentials fetched) and, once Terraform needs it, the
    endpoint that serves them."""

    def __init__(self, boto: botocore.session.Session, label: str):
        self.session = boto
        self.label = label
        self._server: CredentialServer | None = None
        self._lock = threading.Lock()

    def terraform_environment(self) -> dict[str, str | None]:
        with self._lock:
            if self._server is None:
                self._server = CredentialServer(self._served)
        return {**dict.fromkeys(TERRAFORM_HIDDEN), "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **self._server.environment()}

    def _served(self) -> ServedCredentials:
        credentials = self.session.get_credentials()
        try:
            frozen = credentials.get_frozen_credentials()  # refreshed here when it nears its expiry
        except (BotoCoreError, ClientError) as exc:
            raise DevopsError(failure(exc, self.label)) from None
        return ServedCredentials(frozen.access_key, frozen.secret_key, frozen.token, self.expiry())

    def expiry(self) -> datetime.datetime | None:
        """When the credentials expire (an assumed role's, SSO's); None for keys."""
        # botocore keeps a refreshable credential's expiry in this attribute only (no public accessor).
        expiry = getattr(self.session.get_credentials(), "_expiry_time", None)
        return expiry if isinstance(expiry, datetime.datetime) else None


_identities: dict[tuple[str, ...], Identity] = {}
_lock = threading.Lock()


def identity(settings: Settings) -> Identity:
    """The identity of ``settings`` in this process, resolved on first use (one line on failure)."""
    key = (settings.aws_profile, *(os.environ.get(name, "") for name in IDENTITY_VARIABLES))
    with _lock:
        if key not in _identities:
            _identities[key] = _resolve(settings)
        return _identities[key]


def session(settings: Settings) -> botocore.session.Session:
    return identity(settings).session


def terraform_environment(settings: Settings) -> dict[str, str | None]:
    """The environment that gives Terraform this task's identity (None: unset the variable)."""
    return identity(settings).terraform_environment()


def unresolved_session(settings: Settings) -> botocore.session.Session:
    """A session for ``settings``' identity, nothing fetched yet. A profile that came from AWS_PROFILE is left
    for botocore to read there: passed explicitly, it would hide keys in the environment."""
    from_environment = settings.aws_profile == os.environ.get("AWS_PROFILE", "")
    return botocore.session.Session(profile=None if from_environment else settings.aws_profile or None)


def keys_in_environment(boto: botocore.session.Session) -> bool:
    """Whether ``boto`` takes the environment's keys (they come first unless a profile was passed)."""
    return bool(os.environ.get("AWS_ACCESS_KEY_ID")) and not boto.instance_variables().get("profile")


def _resolve(settings: Settings) -> Identity:
    boto = unresolved_session(settings)
    label, profile = profile_label(boto), boto.get_config_variable("profile") or "default"
    try:
        boto.get_scoped_config()  # an unknown profile fails here, before any provider runs
        _use_cli_caches(boto, label)
        credentials = boto.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        credentials.get_frozen_credentials()  # deferred providers (an assumed role, SSO) fetch now, once
    except DevopsError:
        raise
    except (BotoCoreError, ClientError, OSError) as exc:
        raise DevopsError(failure(exc, label, profile)) from None
    return Identity(boto, label)


def profile_label(boto: botocore.session.Session) -> str:
    """How a failure names where the credentials were looked for."""
    if keys_in_environment(boto):
        return "the AWS keys in the environment"
    return f"AWS profile {boto.get_config_variable('profile') or 'default'!r}"


def _use_cli_caches(boto: botocore.session.Session, label: str) -> None:
    resolver = boto.get_component("credential_provider")
    cache = _Cache(str(CLI_CACHE.expanduser()))
    for name in CACHED_PROVIDERS:
        provider = resolver.get_provider(name)
        if provider is not None:
            provider.cache = cache
    assume_role = resolver.get_provider("assume-role")
    if assume_role is not None:
        # botocore's default prompt is getpass, which needs a terminal; this one also reads a piped code.
        assume_role._prompter = _mfa_prompter(label)  # noqa: SLF001 - botocore has no public way to set it


class _Cache(JSONFileCache):
    """The CLI's cache; a cache that cannot be written (a read-only home) only costs the next task a fetch."""

    def __setitem__(self, cache_key: str, value: Any) -> None:
        try:
            super().__setitem__(cache_key, value)
        except OSError:
            pass


def _mfa_prompter(label: str) -> Any:
    def prompt(text: str) -> str:
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                return getpass.getpass(text)
            except EOFError:
                pass
        else:
            sys.stderr.write(text.rstrip() + " (reading it from stdin)\n")
            sys.stderr.flush()
            line = sys.stdin.readline() if sys.stdin is not None else ""
            if line.strip():
                return line.strip()
        raise DevopsError(f"{label} needs an MFA code and none came: run the task in a terminal, or pipe the code "
                          f"to it (`echo 123456 | {hints.inv('login')}`: later tasks use the cached session)")
    return prompt


def failure(exc: BaseException, label: str, profile: str = "PROFILE") -> str:
    """One line: what failed resolving ``label``'s credentials, and what to do. No secret is in it: botocore's
    messages name profiles, roles and programs, never keys or tokens."""
    login = hints.inv("login")
    if isinstance(exc, ProfileNotFound):
        return f"{label} not found: check AWS_PROFILE, or add the profile to ~/.aws/config (or AWS_CONFIG_FILE's)"
    if isinstance(exc, FileNotFoundError):
        program = Path(str(exc.filename or "")).name or "the credential helper"
        return (f"{label} gets its credentials from `{program}` (credential_process), which is not in the toolbox "
                f"image: run the task under the helper on this host (e.g. `aws-vault exec {profile} -- "
                f"{hints.command()} ...`), or through the helper's container-credentials server (e.g. `aws-vault "
                f"exec --ecs-server {profile} -- {hints.command()} ...`)")
    if isinstance(exc, CredentialRetrievalError) and "custom-process" in str(exc):
        detail = last_line(exc.kwargs.get("error_msg", "")) or "no message"
        return f"the credential helper (credential_process) of {label} failed: {detail}"
    if isinstance(exc, (SSOError, TokenRetrievalError)):
        return (f"the SSO session of {label} has expired or was never signed in: sign in with `{login}` (or "
                f"`aws sso login` where the AWS CLI is installed)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), last_line(error.get("Message", ""))
        if "MultiFactorAuthentication" in message:
            return (f"AWS refused the MFA code for {label} ({message.rstrip('. ')}): run the task again with the "
                    "current code")
        if exc.operation_name == "GetRoleCredentials":
            return f"the SSO session of {label} has expired or was revoked ({code}): sign in again with `{login}`"
        return f"{label}: {exc.operation_name} failed ({code}: {message})"
    if isinstance(exc, NoCredentialsError):
        return (f"no AWS credentials found for {label}: set AWS_PROFILE to a profile of ~/.aws/config, or sign in "
                f"with `{login}`")
    return f"cannot get AWS credentials for {label}: {last_line(str(exc))}"
