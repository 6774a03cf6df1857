"""`inv login`: sign in once, so that the tasks after it need no prompt.

An SSO profile (sso_session or sso_start_url) signs in with the AWS CLI's device code flow: the CLI prints a
URL and a code to open in a browser on any machine (the toolbox has no browser, and a Docker-only host needs
no AWS CLI), and writes the token to ~/.aws/sso/cache. Any other profile resolves its credentials now: an
assumed role's MFA code is asked here, once, and the role's session is cached in ~/.aws/cli/cache for the
tasks that follow (devops/credentials.py). Either way the line at the end says who AWS sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from botocore.exceptions import BotoCoreError

from devops import aws, credentials
from devops.config import Settings
from devops.console import Console
from devops.errors import DevopsError


def run_login(settings: Settings, console: Console) -> None:
    aws.require_region(settings)
    profile = settings.aws_profile or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    if _uses_sso(settings):
        _sso_login(profile, console)
    who = aws.identity(settings, aws.client(settings, "sts"))
    until = credentials.identity(settings).expiry()
    cached = f"; its session lasts until {until.astimezone():%Y-%m-%d %H:%M %Z}" if until else ""
    console.passed(f"signed in as {who['arn']} (account {who['account']}){cached}")


def _uses_sso(settings: Settings) -> bool:
    boto = credentials.unresolved_session(settings)
    if credentials.keys_in_environment(boto):
        return False
    try:
        config = boto.get_scoped_config()
    except BotoCoreError as exc:
        raise DevopsError(credentials.failure(exc, credentials.profile_label(boto))) from None
    return bool(config.get("sso_session") or config.get("sso_start_url"))


def _sso_login(profile: str, console: Console) -> None:
    if not shutil.which("aws"):
        raise DevopsError("the AWS CLI (v2) is not on PATH: run `./toolbox/inv login` (the toolbox has it), or "
                          "install it")
    console.info(f"signing in to IAM Identity Center for AWS profile {profile!r}: open the URL below in a browser "
                 "on any machine and confirm the code")
    code = subprocess.run(["aws", "sso", "login", "--use-device-code", "--no-browser", "--profile", profile],
                          check=False).returncode
    if code:
        raise DevopsError(f"`aws sso login` for AWS profile {profile!r} failed (exit {code}, output above): check "
                          "the profile's sso_session in ~/.aws/config and try again")

