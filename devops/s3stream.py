"""Streaming into and out of S3 without a full copy in memory or on disk.

``MultipartWriter`` is a write-only stream into one object: parts upload on background threads while the
producer goes on, at most ``in_flight`` parts at a time, so memory stays near (in_flight + 1) parts
whatever the object's size. It hashes what it is given (sha256) on the way. Any failure, or leaving the
``with`` block by an exception (Ctrl-C included), aborts the upload so no incomplete multipart upload
is left behind.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from devops.aws import describe
from devops.errors import DevopsError

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
# S3 allows 10,000 parts: the part size doubles every 1,000 parts, so objects can grow to terabytes.
PART_GROWTH_EVERY = 1000
READ_CHUNK = 1 * MiB


class UploadError(DevopsError):
    pass


class MultipartWriter:
    def __init__(self, s3: Any, bucket: str, key: str, part_size: int = PART_SIZE, in_flight: int = 2,
                 content_type: str = "application/octet-stream"):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_size = part_size
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._buffer = bytearray()
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="s3-part")
        self._closed = False
        try:
            reply = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            self._pool.shutdown()
            raise UploadError(f"cannot start the upload to s3://{bucket}/{key}: {describe(exc)}") from None
        self.upload_id = reply["UploadId"]
        # botocore asks again when an answer is lost on the way; the request it lost may have started an
        # upload of its own that nobody would complete or abort. Only then are this key's others looked for.
        self._asked_again = reply.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0

    def __enter__(self) -> "MultipartWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None or not self._closed:
            self.abort()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._current_part_size():
            size = self._current_part_size()
            part = bytes(memoryview(self._buffer)[:size])  # one copy of the part, none of the rest
            del self._buffer[:size]
            self._submit(part)

    def _current_part_size(self) -> int:
        return self.part_size * 2 ** (len(self._parts) // PART_GROWTH_EVERY)

    def _submit(self, data: bytes) -> None:
        self._raise_failed()
        self._slots.acquire()  # back-pressure: wait while `in_flight` parts are uploading
        number = len(self._parts) + 1
        future = self._pool.submit(self._upload_part, number, data)
        future.add_done_callback(lambda _: self._slots.release())
        self._parts.append(future)

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        reply = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                                    Body=data)
        return {"PartNumber": number, "ETag": reply["ETag"]}

    def _raise_failed(self) -> None:
        for future in self._parts:
            if future.done() and future.exception() is not None:
                raise UploadError(f"upload to s3://{self.bucket}/{self.key} failed: {_why(future.exception())}")

    def close(self) -> str:
        """Upload what is left and complete the object; returns the sha256 of everything written."""
        if self._buffer or not self._parts:
            self._submit(bytes(self._buffer))
            self._buffer = bytearray()
        try:
            parts = [future.result() for future in self._parts]
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})
        except Exception as exc:  # noqa: BLE001 - reported as one line; abort follows in __exit__
            raise UploadError(f"upload to s3://{self.bucket}/{self.key} failed: {_why(exc)}") from None
        finally:
            self._pool.shutdown(wait=True)
        self._closed = True
        self._abort_strays()
        return self.sha256.hexdigest()

    def abort(self) -> None:
        """Drop the upload (and its parts) on S3; best effort, never raises."""
        for future in self._parts:
            future.cancel()
        self._pool.shutdown(wait=True)
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except (ClientError, BotoCoreError):
            pass  # nothing more to do: S3 is unreachable, and the lifecycle rule still expires it
        self._closed = True
        self._abort_strays()

    def _abort_strays(self) -> None:
        """Abort the uploads of this key that a lost answer started (see __init__); best effort."""
        if not self._asked_again:
            return
        try:
            uploads = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=self.key).get("Uploads", [])
            for upload in uploads:
                if upload["Key"] == self.key and upload["UploadId"] != self.upload_id:
                    self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload["UploadId"])
        except (ClientError, BotoCoreError):
            pass  # the lifecycle rule expires them


def _why(exc: BaseException | None) -> str:
    if isinstance(exc, (ClientError, BotoCoreError)):
        return describe(exc)
    return str(exc) or type(exc).__name__


def read_object(s3: Any, bucket: str, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """An object's bytes, streamed in chunks."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise DevopsError(f"cannot read s3://{bucket}/{key}: {describe(exc)}") from None
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()
