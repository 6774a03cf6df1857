"""S3's errors, told apart in one place (devops.aws.s3_error_kind), and what its callers make of each: pure logic,
with the errors botocore raises for real S3's answers built here."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from devops.aws import S3ErrorKind, s3_error_kind
from devops.config import Settings
from devops.errors import DevopsError
from devops.modes import PILOT
from devops.sync.store import DumpStore, UnreadableManifest
from devops.validate.checks import Context, bucket_protections
from devops.validate.report import CheckStatus

# A HEAD's answer has no body: botocore makes the HTTP status the code, and its reason the message.
STATUS_MESSAGES = {"403": "Forbidden", "404": "Not Found", "412": "Precondition Failed"}


def s3_error(code: str, operation: str) -> ClientError:
    """The ClientError botocore raises for S3's answer ``code`` to ``operation``."""
    message = STATUS_MESSAGES.get(code, f"the message S3 gives with {code}")
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": int(code) if code.isdigit() else 400}}, operation)


@pytest.mark.parametrize(("code", "operation", "kind"), [
    # A missing key: GetObject says so; a HEAD of the object can only give its status.
    ("NoSuchKey", "GetObject", S3ErrorKind.MISSING_KEY),
    ("NoSuchKey", "DeleteObject", S3ErrorKind.MISSING_KEY),  # a conditional delete (If-Match) of no object
    ("404", "HeadObject", S3ErrorKind.MISSING_KEY),
    # A missing bucket is never a missing key, whichever request met it; HeadBucket's bare 404 is one too.
    ("NoSuchBucket", "GetObject", S3ErrorKind.MISSING_BUCKET),
    ("NoSuchBucket", "ListObjectsV2", S3ErrorKind.MISSING_BUCKET),
    ("NoSuchBucket", "PutObject", S3ErrorKind.MISSING_BUCKET),
    ("NoSuchBucket", "GetBucketLifecycleConfiguration", S3ErrorKind.MISSING_BUCKET),
    ("404", "HeadBucket", S3ErrorKind.MISSING_BUCKET),
    # A conditional write or delete that lost: the condition does not hold, or another one is under way.
    ("PreconditionFailed", "PutObject", S3ErrorKind.PRECONDITION_FAILED),
    ("PreconditionFailed", "DeleteObject", S3ErrorKind.PRECONDITION_FAILED),
    ("ConditionalRequestConflict", "PutObject", S3ErrorKind.PRECONDITION_FAILED),
    ("412", "HeadObject", S3ErrorKind.PRECONDITION_FAILED),
    # No permission (S3 also says this of a missing key to a caller that may not list the bucket).
    ("AccessDenied", "GetObject", S3ErrorKind.ACCESS_DENIED),
    ("403", "HeadObject", S3ErrorKind.ACCESS_DENIED),
    ("403", "HeadBucket", S3ErrorKind.ACCESS_DENIED),
    # A bucket without some configuration is a bucket that exists: none of the kinds above.
    ("NoSuchLifecycleConfiguration", "GetBucketLifecycleConfiguration", S3ErrorKind.OTHER),
    ("NoSuchBucketPolicy", "GetBucketPolicy", S3ErrorKind.OTHER),
    ("ServerSideEncryptionConfigurationNotFoundError", "GetBucketEncryption", S3ErrorKind.OTHER),
    ("NoSuchPublicAccessBlockConfiguration", "GetPublicAccessBlock", S3ErrorKind.OTHER),
    ("NoSuchUpload", "UploadPart", S3ErrorKind.OTHER),
    ("SlowDown", "PutObject", S3ErrorKind.OTHER),
    ("500", "HeadObject", S3ErrorKind.OTHER),
])
def test_each_s3_answer_has_one_kind(code, operation, kind):
    assert s3_error_kind(s3_error(code, operation)) is kind


def test_what_is_no_answer_of_s3s_is_other():
    assert s3_error_kind(EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")) is S3ErrorKind.OTHER
    assert s3_error_kind(TimeoutError("timed out")) is S3ErrorKind.OTHER
    assert s3_error_kind(ClientError({}, "GetObject")) is S3ErrorKind.OTHER  # an answer without an error code


# ---- the callers ---------------------------------------------------------------------------------------


class FakeS3:
    """An S3 client whose calls raise the errors given for them (``{"head_object": ClientError, ...}``) and
    answer the rest with ``answers``."""

    def __init__(self, errors: dict[str, Exception], **answers):
        self.errors, self.answers = errors, answers

    def __getattr__(self, name):
        def call(**kwargs):
            if name in self.errors:
                raise self.errors[name]
            return self.answers.get(name, {})
        return call


def store(**errors: Exception) -> DumpStore:
    return DumpStore(FakeS3(errors), "the-bucket")


def test_a_missing_object_does_not_exist_and_a_forbidden_one_is_an_error():
    assert store(head_object=s3_error("404", "HeadObject")).exists("neon-dumps/a.dump") is False
    with pytest.raises(DevopsError, match=r"^cannot read s3://the-bucket/neon-dumps/a.dump: 403: Forbidden$"):
        store(head_object=s3_error("403", "HeadObject")).exists("neon-dumps/a.dump")


def test_the_bucket_check_names_a_missing_bucket_and_nothing_else_as_missing():
    with pytest.raises(DevopsError, match="^bucket the-bucket not found: apply the Terraform environment"):
        store(head_bucket=s3_error("404", "HeadBucket")).check_bucket()
    with pytest.raises(DevopsError, match=r"^bucket the-bucket is not usable: 403: Forbidden$"):
        store(head_bucket=s3_error("403", "HeadBucket")).check_bucket()


def test_a_missing_manifest_is_not_a_missing_bucket():
    with pytest.raises(DevopsError, match="^no manifest for s3://the-bucket/rds-dumps/a.dump: list the dumps"):
        store(get_object=s3_error("NoSuchKey", "GetObject")).manifest("rds-dumps/a.dump")
    with pytest.raises(UnreadableManifest, match="NoSuchBucket"):
        store(get_object=s3_error("NoSuchBucket", "GetObject")).manifest("rds-dumps/a.dump")


def test_a_lost_conditional_write_means_the_lock_is_held():
    holder = {"purpose": "sync.neon-to-rds", "host": "elsewhere", "pid": 7, "started": "2999-01-01T00:00:00+00:00"}
    s3 = FakeS3({"put_object": s3_error("PreconditionFailed", "PutObject")},
                get_object={"Body": io.BytesIO(json.dumps(holder).encode()), "ETag": '"theirs"'})
    with pytest.raises(DevopsError, match="^another sync is running: sync.neon-to-rds on elsewhere"):
        DumpStore(s3, "the-bucket").lock("sync.neon-to-rds").__enter__()
    # Any other refusal of the write is said as it is.
    with pytest.raises(DevopsError, match="^cannot take the sync lock: AccessDenied"):
        store(put_object=s3_error("AccessDenied", "PutObject")).lock("sync.neon-to-rds").__enter__()


def test_breaking_a_lock_that_is_gone_is_no_error_but_a_missing_bucket_is():
    s3 = FakeS3({"get_object": s3_error("NoSuchKey", "GetObject")}, put_object={"ETag": '"mine"'})
    with DumpStore(s3, "the-bucket").lock("sync.restore", break_lock=True) as lock:
        assert lock.held and lock.broken is None and lock.etag == '"mine"'
    s3 = FakeS3({"get_object": s3_error("NoSuchBucket", "GetObject")}, put_object={"ETag": '"mine"'})
    with pytest.raises(DevopsError, match="^cannot take the sync lock: NoSuchBucket"):
        DumpStore(s3, "the-bucket").lock("sync.restore", break_lock=True).__enter__()


def protections(**errors: Exception):
    context = Context(Settings.load({}, environ={}), {}, PILOT, lambda service: FakeS3(errors))
    return bucket_protections(context)


def test_a_missing_configuration_is_a_protection_lacking_but_a_missing_bucket_is_an_error():
    found = protections(get_bucket_lifecycle_configuration=s3_error("NoSuchLifecycleConfiguration",
                                                                    "GetBucketLifecycleConfiguration"))
    assert found.status is CheckStatus.WARN and "lacks: lifecycle" in found.message
    with pytest.raises(ClientError, match="NoSuchBucket"):
        protections(get_bucket_lifecycle_configuration=s3_error("NoSuchBucket", "GetBucketLifecycleConfiguration"))
