"""The sandbox's AWS emulator: moto's server, with one fix to how it reads bucket policies.

moto 5 evaluates a bucket policy's Condition without the request's context keys, and takes a condition
on a key it does not know as satisfied. The dev bucket's TLS-only policy ("Deny s3:* when
aws:SecureTransport is false") then denies every object write. AWS takes a condition on an absent key
as not satisfied (except for the ...IfExists and Null operators), so the statement does not apply: the
fix does the same, which is what AWS does for requests over HTTPS.
Run as ``python -m devops.emulator -H HOST -p PORT``.
"""

from __future__ import annotations

from typing import Any

from moto.iam import access_control
from moto.server import main

_is_action_permitted = access_control.IAMPolicyStatement.is_action_permitted


def _statement_applies_only_when_its_conditions_hold(
    self: access_control.IAMPolicyStatement, action: str, resource: str = "*", principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> Any:
    known = incoming_condition_values or {}
    for operator, keys in (self._statement.get("Condition") or {}).items():
        if operator.endswith("IfExists") or operator == "Null":
            continue
        if any(key not in known for key in keys):
            return access_control.PermissionResult.NEUTRAL
    return _is_action_permitted(self, action, resource, principal, incoming_condition_values)


access_control.IAMPolicyStatement.is_action_permitted = _statement_applies_only_when_its_conditions_hold

if __name__ == "__main__":
    main()
