"""Endpoint parsing: pure logic, no server."""

import pytest

from devops.errors import DevopsError
from devops.masking import mask
from devops.postgres import parse_url


def test_neon_pooler_host_is_replaced_by_the_direct_host_with_a_note():
    url = "postgresql://neondb_owner:s3cr3t-pw@ep-cool-lake-123456-pooler.us-east-2.aws.neon.tech/neondb"
    endpoint, notes = parse_url(url, "Neon", "NEON_DATABASE_URL")
    assert endpoint.host == "ep-cool-lake-123456.us-east-2.aws.neon.tech"
    assert notes and "PgBouncer" in notes[0]
    assert dict(endpoint.params)["sslmode"] == "require"  # remote host: TLS required
    assert "s3cr3t-pw" not in repr(endpoint) and mask("error s3cr3t-pw") == "error ****"


def test_the_url_can_say_otherwise_about_tls_and_local_hosts_need_none():
    remote, _ = parse_url("postgresql://u:p@db.example.com:6543/app?sslmode=verify-full&sslrootcert=/ca.pem",
                          "Neon", "X")
    assert dict(remote.params) == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}
    assert remote.port == 6543
    local, _ = parse_url("postgres://u:p%40ss@127.0.0.1:5433/app", "Neon", "X")
    assert "sslmode" not in dict(local.params) and local.password == "p@ss"


def test_libpq_environment_carries_the_password_so_argv_never_does():
    endpoint, _ = parse_url("postgresql://u:pw-xyz@h.example.com/app", "Neon", "X")
    env = endpoint.libpq_env()
    assert env["PGPASSWORD"] == "pw-xyz" and env["PGHOST"] == "h.example.com" and env["PGSSLMODE"] == "require"
    assert endpoint.masked() == "postgresql://****@h.example.com:5432/app"


def test_unknown_parameters_are_refused():
    with pytest.raises(DevopsError, match="unsupported parameter"):
        parse_url("postgresql://u:p@h/app?foo=bar", "Neon", "X")
