"""TLS as the real services have it: every connection of the tasks verified (the stand-ins accept TLS only,
tests/test_sandbox.py), and a server whose certificate is of another CA, or that offers no TLS, refused with
one line that names the side and what to set, before anything is read or written."""

from __future__ import annotations

import pytest

from tests.helpers import inv, redirect

pytestmark = pytest.mark.sandbox

REFUSALS = {"other-ca": "its TLS certificate is not signed by a CA trusted here",
            "none": "offers no TLS, and the tasks reach {label} over verified TLS only"}
LABELS = {"neon": "Neon", "rds": "RDS"}


@pytest.mark.parametrize("tls", ["other-ca", "none"])
@pytest.mark.parametrize("side", ["neon", "rds"])
def test_a_server_not_verified_is_refused_with_one_line(sandbox_env, server_of_major, side, tls):
    env = redirect(sandbox_env, **{side: server_of_major("18", side, tls=tls)})
    result = inv(env, "sync.neon-to-rds", "--dry-run")
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith(f"[ERROR] {LABELS[side]} at ") and \
        REFUSALS[tls].format(label=LABELS[side]) in errors[0], errors[0]
    if tls == "other-ca":
        assert f"set {side}_ca_file (INVOKE_DEVOPS_{side.upper()}_CA_FILE)" in errors[0], errors[0]


def test_validate_names_an_rds_certificate_it_cannot_verify(sandbox_env, server_of_major):
    env = redirect(sandbox_env, rds=server_of_major("18", "rds", tls="other-ca"))
    result = inv(env, "validate")
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "[FAIL]" in line and "RDS at " in line]
    assert failed and "its TLS certificate is not signed by a CA trusted here" in failed[0], result.stdout


def test_a_tunnel_still_verifies_the_endpoints_name(sandbox_env, sandbox_state, server_of_major):
    """Through rds_address the tasks connect to the tunnel's address and verify the emulated endpoint's name:
    a certificate without that name is refused (here: the Neon stand-in's, reached as if it were RDS)."""
    result = inv({**sandbox_env, "INVOKE_DEVOPS_RDS_ADDRESS": f"127.0.0.1:{sandbox_state['neon']['port']}"},
                 "sync.neon-to-rds", "--dry-run")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1 and "its TLS certificate is for another name" in errors[0], result.stderr
    assert sandbox_state["rds_endpoint"] in errors[0]
