"""The S3 backend (``TINYRES_STORAGE_URL=s3://bucket/prefix``), through fsspec's s3fs.

Any S3-compatible server works: AWS, MinIO, SeaweedFS (the tests run a real one,
``tools/seaweed.py``). The endpoint is ``TINYRES_S3_ENDPOINT_URL``; credentials are the usual
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE``), read by botocore;
with none of them set, requests go unsigned (anonymous).

s3fs and botocore each retry on their own, with their own budgets; both are set to a single
attempt here so that `RetryPolicy` alone decides how long an outage is ridden out, and the
time in the docs is the time a job waits. Every fault is sorted once (`classify`):
transient -> retried, then `StoreUnavailable`; misconfigured -> `StoreMisconfigured` now;
missing -> `ObjectNotFound`.

An s3fs filesystem is not fork-safe (Celery's prefork pool forks after import): the
filesystem is made per process, on first use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from core.storage import (
    ObjectInfo,
    ObjectNotFound,
    RetryPolicy,
    Store,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    TruncatedObject,
    check_key,
    check_recorded,
)
from core.store_local import temp_beside

T = TypeVar("T")
Fault = Literal["transient", "misconfigured", "missing", "refused", "other"]

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "XAmzContentSHA256Mismatch",
}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "403",
    "Forbidden",
    "401",
}
_BUCKET_CODES = {"NoSuchBucket", "InvalidBucketName", "PermanentRedirect", "301"}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not other for other in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> tuple[Fault, str]:
    """What kind of fault `exc` is, and a one-line reason for people."""
    from botocore import exceptions as boto

    chain = _chain(exc)
    for error in chain:
        if isinstance(error, boto.ClientError):
            details = error.response.get("Error", {})
            code = str(details.get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            reason = f"{code or status}: {details.get('Message') or error}"
            if code in _BUCKET_CODES:
                return "misconfigured", f"the bucket is wrong ({reason})"
            if code in _CREDENTIAL_CODES or status in (401, 403):
                return "misconfigured", (
                    f"access denied ({reason}): check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY and the bucket's policy"
                )
            if code in _MISSING_CODES or status == 404:
                return "missing", reason
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return "transient", reason
            return "refused", reason
    for error in chain:
        if isinstance(error, boto.NoCredentialsError | boto.PartialCredentialsError):
            return "misconfigured", f"credentials incomplete: {error}"
        if isinstance(error, boto.HTTPClientError | boto.ConnectionError | ConnectionError):
            return "transient", f"{type(error).__name__}: {error}"
        if isinstance(error, TimeoutError) or type(error).__name__ in (
            "FSTimeoutError",
            "IncompleteRead",
            "ResponseParserError",
            "ClientPayloadError",
            "ServerDisconnectedError",
            "ClientConnectorError",
            "ClientOSError",
        ):
            return "transient", f"{type(error).__name__}: {error}"
        if isinstance(error, ValueError) and "endpoint" in str(error).lower():
            return "misconfigured", f"TINYRES_S3_ENDPOINT_URL: {error}"
    if isinstance(exc, FileNotFoundError):
        return "missing", str(exc)
    if isinstance(exc, PermissionError):
        return "misconfigured", f"access denied ({exc}): check the credentials"
    return "other", f"{type(exc).__name__}: {exc}"


def _anonymous() -> bool:
    return not any(name in os.environ for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE"))


class S3Store(Store):
    """Objects under ``s3://bucket/prefix`` on `endpoint_url` (AWS when None)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 60,
    ) -> None:
        self.bucket, self.prefix, self.endpoint_url = bucket, prefix.strip("/"), endpoint_url
        self.retry = retry or RetryPolicy()
        self.url = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        self._timeouts = {"connect_timeout": connect_timeout, "read_timeout": read_timeout}
        self._fs: Any = None
        self._pid = -1

    @property
    def fs(self) -> Any:
        if self._fs is None or self._pid != os.getpid():
            import s3fs

            self._fs = s3fs.S3FileSystem(
                anon=_anonymous(),
                endpoint_url=self.endpoint_url,
                config_kwargs={"retries": {"max_attempts": 1}, **self._timeouts},
                skip_instance_cache=True,
                use_listings_cache=False,
            )
            self._fs.retries = 1  # s3fs's own retry loop: off, RetryPolicy decides
            self._pid = os.getpid()
        return self._fs

    @property
    def _root(self) -> str:
        return "/".join(part for part in (self.bucket, self.prefix) if part)

    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def _run(self, what: str, call: Callable[[], T]) -> T:
        """`call()`, retried on transient faults per the policy; faults turned into ours."""
        started, failures = time.monotonic(), 0
        while True:
            try:
                return call()
            except StoreError:
                raise
            except Exception as exc:
                fault, reason = classify(exc)
                if fault == "missing":
                    raise ObjectNotFound(f"{what}: not found in {self.url} ({reason})") from exc
                if fault == "misconfigured":
                    raise StoreMisconfigured(f"{self.url}: {what}: {reason}") from exc
                if fault == "refused":
                    raise StoreError(f"{self.url}: {what} refused: {reason}") from exc
                if fault == "other":
                    raise
                failures += 1
                wait = self.retry.wait_after(failures, time.monotonic() - started)
                if wait is None:
                    spent = time.monotonic() - started
                    raise StoreUnavailable(
                        f"{self.url} did not answer ({what}) for {spent:.0f} s of retries: {reason}"
                    ) from exc
                time.sleep(wait)

    def info(self, key: str) -> ObjectInfo:
        path = self._path(key)
        found = self._run(f"info {key}", lambda: self.fs.info(path))
        if found.get("type") != "file":
            raise ObjectNotFound(f"info {key}: {key!r} in {self.url} is a prefix, not an object")
        return ObjectInfo(key, int(found["size"]), str(found.get("ETag", "")).strip('"'))

    def put_file(self, local_path: Path, key: str) -> ObjectInfo:
        path = self._path(key)
        self._run(f"put {key}", lambda: self.fs.put_file(str(local_path), path))
        return self.info(key)

    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        path = self._path(key)
        self._run(f"put {key}", lambda: self.fs.pipe_file(path, data))
        return self.info(key)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        return bytes(self._run(f"get {key}", lambda: self.fs.cat_file(path)))

    def get_file(self, key: str, local_path: Path, *, size: int | None = None) -> ObjectInfo:
        info = check_recorded(self.info(key), size)
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temp_beside(target)
        try:
            self._run(f"get {key}", lambda: self.fs.get_file(self._path(key), str(temporary)))
            got = temporary.stat().st_size
            if got != info.size:
                raise TruncatedObject(
                    f"get {key}: {got} bytes arrived from {self.url}, the store says "
                    f"{info.size}: the download is not trusted"
                )
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return info

    def list(self, prefix: str = "") -> list[str]:
        root = (
            self._path(prefix) if prefix else "/".join(p for p in (self.bucket, self.prefix) if p)
        )
        found = self._run(f"list {prefix or '/'}", lambda: self.fs.find(root, detail=True))
        # Only objects below the root: some servers list a prefix's folder entry too, and
        # s3fs answers an empty prefix with the prefix itself, as a directory.
        files = (p for p, entry in found.items() if entry.get("type") == "file")
        keys = (p.removeprefix(self._root + "/") for p in files if p.startswith(self._root + "/"))
        return sorted(
            key
            for key in keys
            if key
            and not key.endswith("/")
            and (not prefix or key == prefix or key.startswith(prefix + "/"))
        )

    def delete(self, prefix: str) -> None:
        paths = [self._path(key) for key in self.list(prefix)]
        if paths:
            self._run(f"delete {prefix}", lambda: self.fs.rm(paths))

    def check(self) -> None:
        """One listing of at most one key under the prefix: the bucket exists, the
        credentials may read it and the endpoint answers."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        self._run(
            "check",
            lambda: self.fs.call_s3(
                "list_objects_v2", Bucket=self.bucket, Prefix=prefix, MaxKeys=1
            ),
        )
