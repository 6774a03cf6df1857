"""`inv secrets.set-neon-url`: the URL from stdin into the secret Terraform created empty, and nowhere else."""

from __future__ import annotations

import subprocess
from urllib.parse import unquote, urlsplit

from devops.config import REPO_ROOT
from tests.helpers import INV


def set_url(env, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([*INV, "secrets.set-neon-url"], input=stdin, env=env, capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)


def test_the_url_from_stdin_lands_in_the_secret_and_in_no_output(sandbox, sandbox_env, neon):
    arn = sandbox.terraform().outputs()["operations"]["neon_url_secret_arn"]
    result = set_url({k: v for k, v in sandbox_env.items() if k != "NEON_DATABASE_URL"}, neon + "\n")
    assert result.returncode == 0, result.stderr
    assert sandbox.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"] == neon
    password = unquote(urlsplit(neon).password)
    assert neon not in result.stdout + result.stderr and password not in result.stdout + result.stderr
    assert f"stored in {arn}" in result.stdout


def test_a_bad_url_is_refused_in_one_line_and_the_secret_is_unchanged(sandbox, sandbox_env, neon):
    arn = sandbox.terraform().outputs()["operations"]["neon_url_secret_arn"]
    secrets = sandbox.client("secretsmanager")
    secrets.put_secret_value(SecretId=arn, SecretString=neon)
    for stdin, expected in (("mysql://u:sup3rsecret@h/db", "must start with postgresql://"),
                            ("", "no Neon URL on stdin")):
        result = set_url(sandbox_env, stdin)
        assert result.returncode == 1
        [line] = [line for line in result.stderr.splitlines() if line.strip()]
        assert line.startswith("[ERROR] ") and expected in line, result.stderr
        assert "sup3rsecret" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert secrets.get_secret_value(SecretId=arn)["SecretString"] == neon
