"""The region and AWS's answers, before and around every request (devops/aws.py): an unknown or malformed region
is one line before any request, in every task that talks to AWS; an answer that is not an AWS API's (a web page,
a body botocore cannot parse) is one line naming the endpoint. The rule and the answers are checked here against a
small HTTP server of the test's own (real botocore clients, no sandbox); the tasks against the session's sandbox.
validate's own lines are in tests/test_validate.py."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from devops import aws
from devops.config import Settings
from devops.errors import DevopsError
from devops.terraform import Terraform
from tests.helpers import inv, without_log

EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def settings(config: dict | None = None, **environ: str) -> Settings:
    return Settings.load(config or {}, environ=environ)


# ---- the region -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2", "us-gov-west-1", "cn-north-1", "ap-southeast-5"])
def test_a_region_botocore_knows_is_used(region):
    assert aws.region_problem(settings(AWS_REGION=region)) is None


@pytest.mark.parametrize("region", ["us-east-1a", "US-EAST-1", "us_east_1", "useast1", "us-east-1 ", "east"])
def test_a_malformed_region_is_refused_saying_what_a_region_looks_like(region):
    problem = aws.region_problem(settings(AWS_REGION=region))
    assert problem == f"AWS region {region!r} is not a region name: check AWS_REGION (a region name looks like us-east-1)"


def test_an_unknown_region_is_refused_by_name_with_the_way_to_use_a_new_one():
    problem = aws.region_problem(settings(AWS_REGION="xx-nowhere-1"))
    assert problem.startswith("unknown AWS region 'xx-nowhere-1': no AWS partition in botocore ")
    assert "check AWS_REGION (a region name looks like us-east-1)" in problem
    assert problem.endswith("also set INVOKE_DEVOPS_NEW_REGION=xx-nowhere-1")
    # A typo is told the regions it is close to.
    assert "(did you mean eu-west-1" in aws.region_problem(settings(AWS_REGION="eu-wst-1"))


def test_the_line_names_where_the_region_came_from():
    assert "check AWS_DEFAULT_REGION" in aws.region_problem(settings(AWS_DEFAULT_REGION="xx-nowhere-1"))
    assert "check devops.region" in aws.region_problem(settings({"region": "xx-nowhere-1"}, AWS_REGION="us-east-1"))


def test_a_new_region_is_used_when_named_twice_and_an_emulator_is_no_such_sign():
    new = settings({"new_region": "ap-newplace-9"}, AWS_REGION="ap-newplace-9")
    assert aws.region_problem(new) is None
    # Named once only, or two different names: refused. AWS_ENDPOINT_URL (an emulator answers 500 pages for
    # regions it does not know) changes nothing.
    assert aws.region_problem(settings({"new_region": "ap-newplace-9"}, AWS_REGION="ap-newplace-8"))
    assert aws.region_problem(settings(AWS_REGION="ap-newplace-9", AWS_ENDPOINT_URL="http://127.0.0.1:5000"))
    # The opt-in does not make a malformed name one.
    assert "is not a region name" in aws.region_problem(settings({"new_region": "ap-new"}, AWS_REGION="ap-new"))


def test_no_client_and_no_terraform_for_an_unknown_region(tmp_path):
    unknown = settings(AWS_REGION="xx-nowhere-1")
    with pytest.raises(DevopsError, match="^unknown AWS region 'xx-nowhere-1'"):
        aws.client(unknown, "sts")
    # Before Terraform runs (its calls take the tasks' region): even before it is looked for on PATH.
    terraform = Terraform(unknown, env={"PATH": str(tmp_path)})
    with pytest.raises(DevopsError, match="^unknown AWS region 'xx-nowhere-1'"):
        terraform.run("version")


# ---- answers that are not AWS's -----------------------------------------------------------------------------


class NotAws:
    """An HTTP server on 127.0.0.1 that answers every request with ``status``, ``content_type`` and ``body``,
    and counts the requests."""

    def __init__(self, status: int, content_type: str, body: bytes):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


PAGE = b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n"


@pytest.fixture
def answering(monkeypatch):
    """A function that starts a NotAws server and gives Settings whose AWS_ENDPOINT_URL leads to it."""
    for name, value in EMULATOR_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    servers = []

    def start(status: int, content_type: str, body: bytes) -> tuple[NotAws, Settings]:
        servers.append(NotAws(status, content_type, body))
        return servers[-1], settings(AWS_REGION="us-east-1", AWS_ENDPOINT_URL=servers[-1].url)

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("service", ["sts", "ecr"])  # an XML API and a JSON one
def test_a_web_page_is_one_line_naming_the_endpoint_at_once(answering, service):
    server, where = answering(500, "text/html; charset=utf-8", PAGE)
    call = {"sts": lambda c: c.get_caller_identity(), "ecr": lambda c: c.describe_repositories()}[service]
    with pytest.raises(aws.ForeignAnswer) as raised:
        call(aws.client(where, service))
    message = str(raised.value)
    assert message == (f"{server.url} answered HTTP 500 with a web page, not as an AWS API does: check AWS_ENDPOINT_URL "
                       "(it must lead to AWS or an emulator of it, such as the sandbox's: `inv sandbox.status`) and the "
                       "region us-east-1")
    assert server.requests == 1  # not retried, as botocore retries a 5xx


def test_the_callers_lines_keep_the_endpoint(answering):
    server, where = answering(502, "text/html", b"<html><body>Bad Gateway</body></html>")
    with pytest.raises(DevopsError, match=f"^{server.url} answered HTTP 502 with a web page"):
        aws.identity(where)
    with pytest.raises(DevopsError, match=f"^cannot read RDS instance db: {server.url} answered HTTP 502"):
        aws.require_rds_available(where, "db")


def test_a_head_error_with_a_web_page_type_is_not_awss(answering):
    server, where = answering(404, "text/html", b"<html>Not Found</html>")
    with pytest.raises(aws.ForeignAnswer, match=f"^{server.url} answered HTTP 404 with a web page"):
        aws.client(where, "s3").head_object(Bucket="state", Key="dev/terraform.tfstate")


def test_a_body_botocore_cannot_parse_is_one_line_naming_the_endpoint(answering):
    server, where = answering(200, "text/plain", b"hello, this is not XML")
    with pytest.raises(aws.ForeignAnswer, match=f"^{server.url} answered with a body botocore cannot parse, not as an "
                                                "AWS API does: check AWS_ENDPOINT_URL"):
        aws.client(where, "rds").describe_db_instances()


def test_a_download_of_a_web_page_is_data_not_a_foreign_answer(answering):
    server, where = answering(200, "text/html", PAGE)
    body = aws.client(where, "s3").get_object(Bucket="site", Key="index.html")["Body"].read()
    assert body == PAGE


def test_without_an_endpoint_url_the_line_points_at_the_way_to_aws():
    line = aws.foreign_answer(settings(AWS_REGION="eu-west-1"), "https://sts.eu-west-1.amazonaws.com",
                              "HTTP 403 with a web page")
    assert line == ("https://sts.eu-west-1.amazonaws.com answered HTTP 403 with a web page, not as an AWS API does: "
                    "check the way to AWS from here (a proxy: HTTPS_PROXY, NO_PROXY) and the region eu-west-1")


def test_an_errors_message_is_one_line():
    error = ClientError({"Error": {"Code": "500", "Message": "first line\nsecond line\nthird"}}, "DescribeImages")
    assert aws.describe(error) == "500: first line"


# ---- the tasks, on the sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", [["sync.neon-to-rds", "--dry-run"], ["sync.list"]])
def test_other_tasks_refuse_an_unknown_region_in_one_error_line(sandbox, sandbox_env, task):
    network = sandbox.network()
    network.reset()
    result = inv({**sandbox_env, "AWS_REGION": "xx-nowhere-1"}, *task)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("[")]
    assert [without_log(line) for line in errors if line.startswith("[ERROR]")] == [
        f"[ERROR] {aws.region_problem(settings(AWS_REGION='xx-nowhere-1'))}"], result.stdout + result.stderr
    assert not any(line.startswith(("[PASS]", "[FAIL]")) for line in errors)
    assert "Traceback" not in result.stderr and "html" not in (result.stdout + result.stderr).lower()
    assert network.counts()["aws"].connections == 0  # before any request
