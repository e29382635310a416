"""``s3://`` object store: boto3 against AWS S3, MinIO, Ceph RGW, moto, CubeFS.

boto3 is synchronous, so every call (including reading the response body)
runs in a bounded thread pool; the event loop never blocks on the network.

Conditional writes are the whole point of this module (docs/architecture.md#bucket-layout):
create-only is ``PutObject`` with ``If-None-Match: *``, CAS is
``PutObject`` with ``If-Match: <etag>``.

**ETags are unquoted.** S3 returns ETags in quotes (``"9b2c…"``); our API
hands them out and takes them back without quotes, and ``If-Match`` is sent
unquoted. Why (observed, boto3 1.44 / moto 5.2.5 / Ceph 16.2.15):

* Ceph radosgw compares ``If-Match`` byte-for-byte with its stored, unquoted
  ETag: the quoted value S3 itself returned is refused with 412 although the
  object did not change; the unquoted value succeeds.
* moto strips quotes from both sides before comparing
  (``If-Match.replace('"', '')``): both forms work there.
* AWS S3 documents the quoted form; AWS itself is not part of our tests.

Unquoted is the one form every implementation we test accepts. A quoted
ETag handed to :meth:`S3Store.put` is unquoted first.

**CAS on a missing object.** moto answers ``If-Match`` on a missing
key with 404 ``NoSuchKey``, radosgw with 412; both become
:class:`PreconditionFailed`, as the interface promises ("its ETag changed (or
the object is gone)").

**Contended CAS on radosgw** sometimes answers 500 ``UnknownError`` instead of
412 (6 of 240 attempts with 8 racing writers in our runs; none of those was
applied, but that is not guaranteed). It surfaces as
:class:`StoreUnavailable` — outcome unknown, re-read before deciding.

**Ranges.** A range that starts past the end (moto) and any range of an empty
object (moto and radosgw) answer 416 ``InvalidRange``; the interface says
"shorter if the object ends first", so that is an empty result, not an error.

**ETags are content hashes on S3** (MD5 for single-part PUTs): rewriting
identical bytes keeps the ETag. That is harmless for CAS — a compare that
succeeds against identical content is indistinguishable from one against the
version the caller read — but unlike the file and memory stores, "the ETag
changes on every write" holds on S3 only when the content changes.

**Retries.** Callers retry with :func:`~.objectstore.retrying`, so botocore
makes few attempts (``max_attempts``, standard mode). Conditional PUTs get
*no* botocore retry at all: if the first attempt was applied but its answer
lost (timeout, reset), a transparent retry would get 412 for our own write
and we would report "someone else won" — a wrong answer. Without the retry
the caller sees :class:`StoreUnavailable` ("unknown outcome") and re-reads,
as objectstore.py prescribes.

**Checksums.** botocore ≥ 1.36 adds CRC checksums (aws-chunked trailers over
HTTPS) to every PutObject by default; several S3-compatible servers (older
Ceph RGW and MinIO releases among them) reject or mangle those requests.
We set ``request_checksum_calculation``/``response_checksum_validation`` to
``when_required``; Floe's record batches carry their own CRC32C.

Error mapping (same at :meth:`S3Store.check` and at run time):

=====================================================  =======================
412 / ``PreconditionFailed``, 409                      PreconditionFailed
``ConditionalRequestConflict``
404 / ``NoSuchKey``                                    NotFound
``NoSuchBucket``, ``AccessDenied``,                    StoreMisconfigured
``InvalidAccessKeyId``, ``SignatureDoesNotMatch``,
other 401/403, 301 (wrong region), 501
(conditional writes not implemented), missing
credentials
5xx, throttling, timeouts, connection errors,          StoreUnavailable
anything else
=====================================================  =======================

At :meth:`S3Store.check` an endpoint that cannot be reached is
:class:`StoreMisconfigured` (with the endpoint in the message), so a broker
with a typo in ``--s3-endpoint`` exits with the reason at start.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from ..errors import NotFound, PreconditionFailed, StoreError, StoreMisconfigured, StoreUnavailable
from .objectstore import GetResult, ObjectInfo
from .threaded import ThreadedStore

__all__ = ["S3Store", "unquote_etag"]

T = TypeVar("T")

#: Error codes that mean "this will not get better by retrying": wrong bucket,
#: wrong credentials, wrong region, no permission.
MISCONFIGURED_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        "RequestTimeTooSkewed",
        "InvalidToken",
        "NotImplemented",
        "NotSignedUp",
        "UnauthorizedAccess",
    }
)
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})

_CREDENTIAL_ERRORS = (bce.NoCredentialsError, bce.PartialCredentialsError)
_CONFIG_ERRORS = (
    bce.InvalidRegionError,
    bce.UnknownEndpointError,
    bce.InvalidS3AddressingStyleError,
    bce.InvalidEndpointConfigurationError,
)


def unquote_etag(etag: str) -> str:
    """``"abc"`` → ``abc`` (also weak ``W/"abc"``); our API never carries quotes."""
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _client_error_parts(exc: bce.ClientError) -> tuple[int, str, str]:
    resp: dict[str, Any] = exc.response or {}
    err = resp.get("Error") or {}
    status = int((resp.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    code = str(err.get("Code") or "")
    message = str(err.get("Message") or "")
    return status, code, message


class S3Store(ThreadedStore):
    """Object store on an S3 bucket, all keys under ``prefix``.

    Credentials come from boto3's default chain (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, profiles, web identity, instance metadata)
    unless given explicitly (tests). ``region`` defaults to boto3's chain too;
    with a custom endpoint and no region configured, ``us-east-1`` is used for
    signing. ``path_style`` is needed by most self-hosted servers (MinIO, RGW
    without wildcard DNS, moto).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 2,
        max_pool_connections: int = 64,
        workers: int = 32,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty")
        self.bucket = bucket
        clean = prefix.strip("/")
        self.prefix = clean + "/" if clean else ""
        session = boto3.session.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            region_name=region,
        )
        if session.region_name is None and endpoint_url is not None:
            region = "us-east-1"

        def make(attempts: int) -> Any:
            cfg = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": attempts},
                max_pool_connections=max_pool_connections,
                s3={"addressing_style": "path" if path_style else "auto"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg)

        self._client = make(max(1, max_attempts))
        # Conditional PUTs: never retried by botocore (see module docstring).
        self._cond_client = make(1)
        self.endpoint: str = str(self._client.meta.endpoint_url)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="floe-s3")
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix} at {self.endpoint})"

    # --- plumbing -----------------------------------------------------------

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid object key {key!r}")
        return self.prefix + key

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _translate(self, exc: BaseException, what: str) -> BaseException:
        """Map a boto3/botocore/urllib3 exception onto the store's error classes."""
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, bce.ClientError):
            status, code, message = _client_error_parts(exc)
            label = code if code and code != str(status) else ""
            detail = f"{what}: HTTP {status} {label}".rstrip() + (f": {message}" if message else "")
            if code in PRECONDITION_CODES or status == 412:
                return PreconditionFailed(what)
            if code in MISCONFIGURED_CODES or status in (301, 401, 403, 501):
                return StoreMisconfigured(f"{detail} ({self._where()})")
            if code in NOT_FOUND_CODES or status == 404:
                return NotFound(what)
            return StoreUnavailable(detail)
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return StoreMisconfigured(
                f"{what}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or a profile / role)"
            )
        if isinstance(exc, _CONFIG_ERRORS):
            return StoreMisconfigured(f"{what}: {exc}")
        if isinstance(exc, bce.ParamValidationError):
            return ValueError(f"{what}: {exc}")
        if isinstance(exc, bce.BotoCoreError | OSError):
            return StoreUnavailable(f"{what}: {type(exc).__name__}: {exc} ({self.endpoint})")
        # urllib3 errors escaping from a body read, and anything else unexpected.
        mod = type(exc).__module__
        if mod.startswith(("urllib3", "http.client", "botocore")):
            return StoreUnavailable(f"{what}: {type(exc).__name__}: {exc} ({self.endpoint})")
        return exc

    def _sync(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Call blocking ``fn`` (in a pool thread) and translate its exceptions."""
        try:
            return fn(*args)
        except StoreError:
            raise
        except Exception as exc:
            mapped = self._translate(exc, what)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(self._sync, what, fn, *args))
        except RuntimeError as exc:  # pool shut down under us
            raise StoreUnavailable(f"{what}: {exc}") from exc

    # --- blocking operations (run in the pool) ------------------------------

    def _get(self, key: str) -> GetResult:
        resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        body = resp["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        return GetResult(data, unquote_etag(resp.get("ETag", "")))

    def _ranged(self, key: str, header: str) -> tuple[bytes, bool]:
        """GET with a Range header; (data, whether the server honoured the range).

        416 (range starts past the end, or any range of an empty object) is an
        empty answer, not an error: the object exists.
        """
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key), Range=header)
        except bce.ClientError as exc:
            status, code, _ = _client_error_parts(exc)
            if status == 416 or code == "InvalidRange":
                return b"", True
            raise
        body = resp["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        return data, bool(resp.get("ContentRange")) or resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 206

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0:
            raise ValueError(f"negative range start {start}")
        if length <= 0:
            self._head(key)  # still NotFound for a missing key
            return b""
        data, ranged = self._ranged(key, f"bytes={start}-{start + length - 1}")
        return data if ranged else data[start : start + length]

    def _get_suffix(self, key: str, length: int) -> bytes:
        if length <= 0:
            self._head(key)
            return b""
        data, ranged = self._ranged(key, f"bytes=-{length}")
        return data if ranged else data[-length:]

    def _head(self, key: str) -> ObjectInfo:
        resp = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return ObjectInfo(int(resp["ContentLength"]), unquote_etag(resp.get("ETag", "")))

    def _put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        if_none_match: bool,
        if_match: str | None,
    ) -> str:
        body = bytes(data) if isinstance(data, memoryview) else data
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": body}
        client = self._client
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
            client = self._cond_client
        elif if_match is not None:
            kwargs["IfMatch"] = unquote_etag(if_match)
            client = self._cond_client
        try:
            resp = client.put_object(**kwargs)
        except bce.ClientError as exc:
            status, code, _ = _client_error_parts(exc)
            if if_match is not None and (status == 404 or code in NOT_FOUND_CODES):
                raise PreconditionFailed(key) from exc  # CAS on a missing object
            raise
        etag = resp.get("ETag")
        if not etag:  # some gateways omit it; the caller needs it for the next CAS
            return self._head(key).etag
        return unquote_etag(etag)

    def _list(self, prefix: str) -> list[str]:
        return [key for key, _ in self._list_etags(prefix)]

    def _list_etags(self, prefix: str) -> list[tuple[str, str]]:
        full = self.prefix + prefix
        cut = len(self.prefix)
        keys: list[tuple[str, str]] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents") or ():
                keys.append((obj["Key"][cut:], unquote_etag(obj.get("ETag", ""))))
        keys.sort()  # S3 already sorts; some compatible servers do not
        return keys

    def _delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except bce.ClientError as exc:
            status, code, _ = _client_error_parts(exc)
            if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                return
            raise

    def _check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as exc:
            raise StoreMisconfigured(self._bucket_problem(exc)) from exc
        probe = f".floe-check/{uuid.uuid4().hex}"
        where = f"check {self.prefix}{probe} in {self._where()}"

        def put(data: bytes, if_none_match: bool, if_match: str | None) -> str:
            return self._sync(where, self._put, probe, data, if_none_match, if_match)

        try:
            etag = put(b"floe-check", True, None)
            try:
                put(b"floe-check-2", True, None)
            except PreconditionFailed:
                pass
            else:
                raise StoreMisconfigured(
                    f"{self._where()} ignored If-None-Match: * (create-only PUT overwrote an "
                    "existing object); Floe needs conditional writes (AWS S3, MinIO, Ceph RGW)"
                )
            try:
                put(b"floe-check-3", False, "0" * 32)
            except PreconditionFailed:
                pass
            else:
                raise StoreMisconfigured(
                    f"{self._where()} ignored If-Match (a compare-and-swap with a wrong ETag "
                    "succeeded); Floe needs conditional writes"
                )
            etag = put(b"floe-check-4", False, etag)
            got = self._sync(where, self._get, probe)
            if got.data != b"floe-check-4" or got.etag != etag:
                raise StoreMisconfigured(
                    f"{self._where()}: probe object {self.prefix}{probe} read back "
                    f"{got.data[:32]!r} etag {got.etag!r}, expected etag {etag!r}"
                )
        finally:
            try:
                self._delete(probe)
            except Exception:  # best effort; the real error is raised above
                pass

    def _bucket_problem(self, exc: bce.ClientError) -> str:
        """Explain a failed HeadBucket (its 4xx answers carry no error code: ask again)."""
        status, code, message = _client_error_parts(exc)
        if not code or code == str(status):
            try:
                self._client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            except bce.ClientError as exc2:
                status, code, message = _client_error_parts(exc2)
            except Exception:  # keep the HeadBucket answer
                pass
        if code == "NoSuchBucket" or (status == 404 and code in ("", "404")):
            return f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}"
        if code == "InvalidAccessKeyId":
            return f"S3 access key is not known to {self.endpoint} (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID"
        if code == "SignatureDoesNotMatch":
            return (
                f"S3 rejected the request signature at {self.endpoint} (SignatureDoesNotMatch): "
                "check AWS_SECRET_ACCESS_KEY (and the region / endpoint)"
            )
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return (
                f"access denied to S3 bucket {self.bucket!r} at {self.endpoint} "
                f"({code or status}: {message}); check the credentials' permissions"
            )
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed") or status == 301:
            return f"S3 bucket {self.bucket!r} is in another region than configured ({code or status}); set --s3-region"
        if status >= 500:
            raise StoreUnavailable(f"HeadBucket {self._where()}: HTTP {status} {code}: {message}")
        return f"S3 bucket {self.bucket!r} at {self.endpoint} is not usable: HTTP {status} {code}"

    # --- ObjectStore API ----------------------------------------------------

    async def check(self) -> None:
        """Prove the bucket exists, the credentials work and conditional writes are honoured.

        Raises :class:`StoreMisconfigured` with a readable reason (bucket missing,
        credentials wrong, endpoint unreachable, conditional writes ignored);
        :class:`StoreUnavailable` only for 5xx answers, which may pass.
        """
        try:
            await self._run(f"check {self._where()}", self._check)
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, bce.ConnectionError | bce.HTTPClientError | OSError):
                raise StoreMisconfigured(
                    f"cannot reach S3 endpoint {self.endpoint}: {type(cause).__name__}: {cause}"
                ) from exc
            raise

    async def close(self) -> None:
        """Stop the pool and the HTTP connection pools; later calls fail."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        for client in (self._client, self._cond_client):
            try:
                client.close()
            except Exception:  # closing is best effort
                pass
