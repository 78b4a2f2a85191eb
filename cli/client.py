"""A small client of the tinyres API: JSON requests (httpx), job events (httpx-sse) with
reconnection, and resumable uploads (tuspy)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from httpx_sse import SSEError, connect_sse

DEFAULT_URL = "http://127.0.0.1:8000"
UPLOAD_CHUNK = 8 * 1024**2
RECONNECT_TRIES = 30


class ServerRefused(Exception):
    """The API answered an error (its reason is the message)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class Unreachable(Exception):
    """The API could not be reached."""


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: Any


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return detail if isinstance(detail, str) else json.dumps(detail)


class Client:
    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": api_key} if api_key else {}
        timeout = httpx.Timeout(30.0, read=60.0)
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer (None for an empty one); `ServerRefused` for a 4xx or 5xx."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise ServerRefused(response.status_code, _reason(response))
        if not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=query)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def download(self, path: str, target: IO[bytes]) -> int:
        """Stream a GET into `target`; returns the bytes written."""
        written = 0
        try:
            with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ServerRefused(response.status_code, _reason(response))
                for chunk in response.iter_bytes():
                    target.write(chunk)
                    written += len(chunk)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from exc
        return written

    def predict(self, image: Path, model: str | None, top_k: int | None) -> Any:
        fields = {k: str(v) for k, v in {"model": model, "top_k": top_k}.items() if v}
        with image.open("rb") as file:
            files = {"image": (image.name, file, "application/octet-stream")}
            return self.request("POST", "/predict", files=files, data=fields)

    def events(self, job_id: str, last_id: str | None = None) -> Iterator[Event]:
        """The job's events until `end`, reconnecting with Last-Event-ID when dropped."""
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(self.http, "GET", f"/jobs/{job_id}/events", headers=headers) as es:
                    if es.response.status_code >= 400:
                        es.response.read()
                        raise ServerRefused(es.response.status_code, _reason(es.response))
                    for sse in es.iter_sse():
                        if not sse.data:  # a keep-alive comment
                            continue
                        failures = 0
                        last_id = sse.id or last_id
                        yield Event(sse.id, sse.event, json.loads(sse.data))
                        if sse.event == "end":
                            return
            except (httpx.TransportError, SSEError) as exc:
                failures += 1
                if failures > RECONNECT_TRIES:
                    raise Unreachable(f"lost the event stream of job {job_id}: {exc}") from exc
                time.sleep(min(0.5 * failures, 5.0))

    def upload(
        self, path: Path, name: str, on_progress: Callable[[int, int], None] | None = None
    ) -> str:
        """Send a file or folder (as a tar made on the fly) with tus; resumes an upload of the
        same path, size and modification time. Returns the source path to shard."""
        from cli.uploads import upload

        return upload(self, path, name, on_progress)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyres"
