"""The one-time codes of a virtual MFA device (RFC 6238 TOTP, as authenticator apps and AWS compute them:
HMAC-SHA1 of the 30-second step since the epoch, truncated to 6 digits). Pure: the emulator checks codes
with it (devops/emulator.py) and tests play the user's authenticator app with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

STEP = 30  # seconds
DIGITS = 6


def totp(seed_base32: str, at: float | None = None) -> str:
    """The code the device with this base32 seed shows at ``at`` (seconds since the epoch; None: now)."""
    key = base64.b32decode(seed_base32.upper() + "=" * (-len(seed_base32) % 8))
    counter = int((time.time() if at is None else at) // STEP)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 10 ** DIGITS:0{DIGITS}d}"


def valid(seed_base32: str, code: str, at: float | None = None, skew: int = 1) -> bool:
    """Whether ``code`` is the device's code at ``at`` or within ``skew`` steps of it (AWS tolerates a
    clock that is a step off either way)."""
    now = time.time() if at is None else at
    return any(hmac.compare_digest(totp(seed_base32, now + step * STEP), code or "")
               for step in range(-skew, skew + 1))
