"""Endpoint parsing: pure logic, no server."""

from pathlib import Path

import pytest

from devops.errors import DevopsError
from devops.masking import mask
from devops.postgres import address_of, make_endpoint, parse_url, system_ca_file


def test_neon_pooler_host_is_replaced_by_the_direct_host_with_a_note():
    url = "postgresql://neondb_owner:s3cr3t-pw@ep-cool-lake-123456-pooler.us-east-2.aws.neon.tech/neondb"
    endpoint, notes = parse_url(url, "Neon", "NEON_DATABASE_URL")
    assert endpoint.host == "ep-cool-lake-123456.us-east-2.aws.neon.tech"
    assert notes and "PgBouncer" in notes[0]
    assert dict(endpoint.params)["sslmode"] == "verify-full"  # TLS, verified, by default
    assert "s3cr3t-pw" not in repr(endpoint) and mask("error s3cr3t-pw") == "error ****"


def test_a_legacy_vercel_postgres_pooler_host_is_neons_and_replaced_too():
    url = ("postgresql://default:s3cr3t-pw@ep-small-sun-a1b2c3d4-pooler.us-east-1.postgres.vercel-storage.com/"
           "verceldb")
    endpoint, notes = parse_url(url, "Neon", "NEON_DATABASE_URL")
    assert endpoint.host == "ep-small-sun-a1b2c3d4.us-east-1.postgres.vercel-storage.com" and notes
    other, notes = parse_url("postgresql://u:p@ep-x-pooler.example.com/db", "Neon", "NEON_DATABASE_URL")
    assert other.host == "ep-x-pooler.example.com" and not notes  # another provider's host is its own business


def test_tls_is_verified_by_default_against_the_system_store_or_the_ca_setting():
    default, _ = parse_url("postgresql://u:p%40ss@127.0.0.1:5433/app", "Neon", "X")
    assert dict(default.params) == {"sslmode": "verify-full", "sslrootcert": system_ca_file()}
    assert Path(system_ca_file()).is_file() and default.password == "p@ss"
    private, _ = parse_url("postgresql://u:p@h/app", "Neon", "X", ca_file="/etc/my-ca.pem")
    assert dict(private.params) == {"sslmode": "verify-full", "sslrootcert": "/etc/my-ca.pem"}


def test_the_url_can_say_otherwise_about_tls_and_channel_binding_is_kept():
    remote, _ = parse_url("postgresql://u:p@db.example.com:6543/app?sslmode=require&channel_binding=require",
                          "Neon", "X")
    assert dict(remote.params) == {"sslmode": "require", "channel_binding": "require"}
    assert remote.port == 6543 and remote.libpq_env()["PGCHANNELBINDING"] == "require"
    plain, _ = parse_url("postgresql://u:p@127.0.0.1/app?sslmode=disable", "Neon", "X", ca_file="/ca.pem")
    assert dict(plain.params)["sslmode"] == "disable"


def test_a_tunnel_connects_to_its_address_and_verifies_the_endpoints_name():
    endpoint = make_endpoint("RDS", "db.abc.us-east-1.rds.amazonaws.com", 15432, "u", "pw", "app",
                             ca_file="/rds-ca.pem", ca_setting="rds_ca_file", hostaddr=address_of("localhost"))
    env = endpoint.libpq_env()
    assert env["PGHOST"] == "db.abc.us-east-1.rds.amazonaws.com" and env["PGHOSTADDR"] in ("127.0.0.1", "::1")
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/rds-ca.pem"
    assert endpoint.where() == f"db.abc.us-east-1.rds.amazonaws.com:15432/app (via {env['PGHOSTADDR']})"


@pytest.mark.parametrize("error, expected", [
    ("SSL error: certificate verify failed", "RDS at h:5432/app: its TLS certificate is not signed by a CA trusted "
                                             "here (/rds-ca.pem); set rds_ca_file to the PEM file of the CA that "
                                             "signed it"),
    ("server does not support SSL, but SSL was required", "RDS at h:5432/app offers no TLS, and the tasks reach RDS "
                                                          "over verified TLS only (sslmode=verify-full): check that "
                                                          "the address leads to RDS"),
    ("password authentication failed for user \"u\"", "cannot connect to RDS at h:5432/app: password "
                                                       "authentication failed for user \"u\""),
])
def test_a_tls_refusal_is_one_line_naming_the_side_and_what_to_set(error, expected):
    endpoint = make_endpoint("RDS", "h", 5432, "u", "pw", "app", ca_file="/rds-ca.pem", ca_setting="rds_ca_file")
    assert endpoint.refusal(error) == expected


def test_libpq_environment_carries_the_password_so_argv_never_does():
    endpoint, _ = parse_url("postgresql://u:pw-xyz@h.example.com/app", "Neon", "X")
    env = endpoint.libpq_env()
    assert env["PGPASSWORD"] == "pw-xyz" and env["PGHOST"] == "h.example.com" and env["PGSSLMODE"] == "verify-full"
    assert endpoint.masked() == "postgresql://****@h.example.com:5432/app"


def test_unknown_parameters_are_refused():
    with pytest.raises(DevopsError, match="unsupported parameter"):
        parse_url("postgresql://u:p@h/app?foo=bar", "Neon", "X")


def test_an_unset_url_is_refused_with_an_example_that_stays_readable_and_real_credentials_stay_masked():
    with pytest.raises(DevopsError) as unset:
        parse_url("", "Neon", "NEON_DATABASE_URL")
    assert mask(unset.value) == ("NEON_DATABASE_URL is not set: export it (postgresql://<user>:<password>@<host>/"
                                 "<dbname>, as the Neon console's Connect dialog shows it; from Vercel's Neon "
                                 "integration, its unpooled URL: "
                                 "`export NEON_DATABASE_URL=\"$DATABASE_URL_UNPOOLED\"`)")
    assert mask("postgresql://neondb_owner:s3cret@ep-x.neon.tech/db") == "postgresql://****:****@ep-x.neon.tech/db"
    assert mask("postgresql://<user>:s3cret@host/db") == "postgresql://****:****@host/db"
