"""Masking: what every line of output goes through before it is printed or logged (devops.console, the run
log of devops.runlog), so that a connection string or a password that slips into a message never shows.
A module of its own: the console and the run log both use it, and neither imports the other for it."""

from __future__ import annotations

import re
from typing import Any

# Known secret values (passwords read from Secrets Manager or a URL), hidden wherever they appear.
_SECRETS: set[str] = set()

# scheme://user:password@host -> scheme://****:****@host (also user-only forms).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/\s'\"]+)@")
# An example's placeholders (postgresql://<user>:<password>@<host>/<dbname>) stay as written: a real URL's
# user information cannot hold a bare '<' (RFC 3986: it must be percent-encoded).
_PLACEHOLDER = re.compile(r"<[\w-]+>(:<[\w-]+>)?")
# password=... in keyword/value DSNs and query strings.
_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*(?:'[^']*'|\"[^\"]*\"|[^\s&;'\"]+)")


def register_secret(value: str | None) -> None:
    """Hide this exact value in all further output (too-short values would mask ordinary words)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def mask(text: Any) -> str:
    """The text with credentials in URLs, password parameters and registered secrets replaced."""
    out = str(text)
    # Longest first, so a secret containing another is hidden whole.
    for secret in sorted(_SECRETS, key=len, reverse=True):
        out = out.replace(secret, "****")
    out = _URL_USERINFO.sub(lambda m: m.group("scheme") + _mask_userinfo(m.group("userinfo")) + "@", out)
    return _PASSWORD_PARAM.sub(lambda m: f"{m.group(1)}=****", out)


def _mask_userinfo(userinfo: str) -> str:
    if _PLACEHOLDER.fullmatch(userinfo):
        return userinfo
    return "****:****" if ":" in userinfo else "****"


def first_line(exc: Any) -> str:
    """The first non-blank line of an error (an exception or a message), masked; the type's name if empty."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return mask(lines[0].strip()) if lines else type(exc).__name__


def last_line(text: Any, empty: str = "") -> str:
    """The last non-blank line of a tool's output (where it says why it stopped), masked; ``empty`` if none."""
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return mask(lines[-1].strip()) if lines else empty
