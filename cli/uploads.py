"""Resumable uploads with tuspy. A folder goes as a tar made on the fly (cli/tarstream.py).

The upload URL of each (server, path, name, size, modification time) is kept in
`~/.cache/tinyres/uploads.json` (`$XDG_CACHE_HOME` if set), so running the same command
again after an interruption continues from the server's offset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader

from cli.tarstream import FolderTar

if TYPE_CHECKING:
    from cli.client import Client

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return ".tar.gz" if suffix == ".tgz" else suffix
    raise ValueError(f"{path} is not a folder, a .zip, a .tar or a .tar.gz")


def _open(path: Path) -> tuple[IO[bytes], str, int, int]:
    """The bytes to send, the file name to announce, the size and the latest mtime."""
    if path.is_dir():
        tar = FolderTar(path)
        stream: IO[bytes] = tar  # type: ignore[assignment]  # a RawIOBase of bytes
        return stream, f"{path.name or 'upload'}.tar", tar.size, tar.latest_mtime_ns
    stat = path.stat()
    return path.open("rb"), path.name, stat.st_size, stat.st_mtime_ns


def _state_file() -> Path:
    from cli.client import cache_dir

    return cache_dir() / "uploads.json"


def _load_state() -> dict[str, str]:
    try:
        state = json.loads(_state_file().read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(key: str, url: str | None) -> None:
    state = _load_state()
    if url is None:
        state.pop(key, None)
    else:
        state[key] = url
    target = _state_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1))
    temporary.replace(target)


def _refused(exc: TusCommunicationError | TusUploadFailed) -> Exception:
    from cli.client import ServerRefused, Unreachable

    status = getattr(exc, "status_code", None)
    content = getattr(exc, "response_content", None) or b""
    if status is None:
        return Unreachable(f"upload failed: {exc}")
    try:
        reason = json.loads(content).get("detail", "")
    except (ValueError, AttributeError):
        reason = content.decode("utf-8", "replace") if isinstance(content, bytes) else ""
    return ServerRefused(int(status), str(reason or exc))


def _uploader(client: Client, stream: IO[bytes], url: str | None, meta: dict[str, str]) -> Uploader:
    tus = TusClient(f"{client.url}/uploads", headers=dict(client.headers))
    if url is not None:
        with suppress(TusCommunicationError):  # gone (finished, removed, expired): start over
            return tus.uploader(file_stream=stream, url=url, chunk_size=4 * 1024**2)
    return tus.uploader(file_stream=stream, metadata=meta, chunk_size=4 * 1024**2)


def upload(
    client: Client, path: Path, name: str, on_progress: Callable[[int, int], None] | None
) -> str:
    """Send `path` as the upload `name`; returns the source path a shard job takes."""
    import requests

    stream, filename, size, mtime = _open(path)
    key = f"{client.url}|{path.resolve()}|{name}|{size}|{mtime}"
    suffix = ".tar" if path.is_dir() else _suffix(path)
    try:
        uploader = _uploader(
            client, stream, _load_state().get(key), {"name": name, "filename": filename}
        )
        if not uploader.url:
            uploader.set_url(uploader.create_url())
            uploader.offset = 0
        _save_state(key, uploader.url)
        while uploader.offset < size:
            if on_progress is not None:
                on_progress(uploader.offset, size)
            uploader.upload_chunk()
        if on_progress is not None:
            on_progress(size, size)
    except (TusCommunicationError, TusUploadFailed) as exc:
        if getattr(exc, "status_code", None) in (404, 410, 413, 422):
            _save_state(key, None)  # that upload cannot continue
        raise _refused(exc) from exc
    except requests.RequestException as exc:
        from cli.client import Unreachable

        raise Unreachable(f"upload to {client.url} interrupted: {exc}") from exc
    finally:
        stream.close()
    _save_state(key, None)
    return f"uploads/{name}{suffix}"
