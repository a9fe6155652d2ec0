"""Download one file from the Hugging Face Hub: resumable, verified, atomic.

Hand-written on stdlib urllib because huggingface_hub.hf_hub_download differs across 0.14 … 2.x: 0.14 has no
``endpoint=`` and resumes only on request, no version checks the sha256 of what it wrote (size only), and newer
versions fetch Xet-backed files through hf_xet instead of HTTP Range on a ``.part`` file.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from typing import Callable, Union

from tqdm.auto import tqdm

from tinybreaker_ext import __version__
from tinybreaker_ext.errors import ModelFileError, ModelNotFoundError

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30
ProgressArg = Union[bool, Callable[[int, int], None]]


@dataclass(frozen=True)
class HubFileFacts:
    """What the hub publishes about a file (from the HEAD on its resolve URL)."""

    url: str
    size: int | None
    sha256: str | None
    git_sha1: str | None


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_file_url(repo_id: str, filename: str, revision: str = "main", endpoint: str | None = None) -> str:
    return (f"{hub_endpoint(endpoint)}/{repo_id}/resolve/{urllib.parse.quote(revision, safe='')}/"
            f"{urllib.parse.quote(filename)}")


def hub_page_url(repo_id: str, filename: str, revision: str = "main", endpoint: str | None = None) -> str:
    return f"{hub_endpoint(endpoint)}/{repo_id}/blob/{revision}/{filename}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """HEAD must not follow the hub's redirect: the X-Linked-* headers are on the redirect itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _request(url: str, method: str, extra_headers: dict[str, str] | None = None) -> urllib.request.Request:
    request = urllib.request.Request(url, method=method)
    request.add_header("User-Agent", f"tinybreaker-ext/{__version__}")
    request.add_header("Accept-Encoding", "identity")
    for name, value in (extra_headers or {}).items():
        request.add_header(name, value)
    token = os.environ.get("HF_TOKEN")
    if token:  # unredirected: the token goes to the hub, never to the CDN it redirects to
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    return request


def _clean_etag(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    value = value[2:] if value.startswith("W/") else value
    return value.strip('"').lower() or None


def _facts_from_headers(url: str, headers, status: int) -> HubFileFacts:
    linked_size = headers.get("X-Linked-Size")
    linked_etag = _clean_etag(headers.get("X-Linked-Etag"))
    etag = linked_etag or _clean_etag(headers.get("ETag"))
    size_text = linked_size or (headers.get("Content-Length") if status == 200 else None)
    size = int(size_text) if size_text and size_text.isdigit() else None
    sha256 = etag if etag and re.fullmatch(r"[0-9a-f]{64}", etag) else None
    git_sha1 = etag if etag and not linked_etag and re.fullmatch(r"[0-9a-f]{40}", etag) else None
    return HubFileFacts(url, size, sha256, git_sha1)


def _not_found(repo_id: str, filename: str, revision: str, url: str, dest_dir: str, endpoint: str | None,
               reason: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"'{filename}' of hub repo {repo_id} (revision {revision})", [url],
        f"{reason}; download it by hand from {hub_page_url(repo_id, filename, revision, endpoint)} "
        f"and put it in {dest_dir}")


def fetch_hub_file_facts(repo_id: str, filename: str, revision: str = "main", endpoint: str | None = None,
                         dest_dir: str = ".") -> HubFileFacts:
    """HEADs the resolve URL; raises ModelNotFoundError when the hub is unreachable or the file is not there."""
    url = hub_file_url(repo_id, filename, revision, endpoint)
    opener = urllib.request.build_opener(_NoRedirect)
    current = url
    for _ in range(5):  # relative redirects (a renamed repo) stay on the hub and are followed
        try:
            with opener.open(_request(current, "HEAD"), timeout=TIMEOUT_S) as response:
                return _facts_from_headers(url, response.headers, response.status)
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                location = error.headers.get("Location", "")
                if error.headers.get("X-Linked-Size") or error.headers.get("X-Linked-Etag") or "://" in location:
                    return _facts_from_headers(url, error.headers, error.code)
                current = urllib.parse.urljoin(current, location)
                continue
            reason = {401: "not accessible (HTTP 401: gated or private repo? set HF_TOKEN)",
                      403: "not accessible (HTTP 403: accept the repo's terms on the hub and set HF_TOKEN)",
                      404: "not on the hub (HTTP 404)"}.get(error.code, f"HTTP {error.code} {error.reason}")
            raise _not_found(repo_id, filename, revision, url, dest_dir, endpoint, reason) from None
        except (urllib.error.URLError, socket.timeout, OSError, HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise _not_found(repo_id, filename, revision, url, dest_dir, endpoint,
                             f"cannot reach {hub_endpoint(endpoint)} ({reason})") from None
    raise _not_found(repo_id, filename, revision, url, dest_dir, endpoint, "too many redirects")


def _source(facts: HubFileFacts) -> str:
    return f"the file at {facts.url}"


class _Verifier:
    """Hashes the bytes as they are written: sha256 for LFS files, the git blob sha1 for small plain files."""

    def __init__(self, facts: HubFileFacts):
        self.facts = facts
        if facts.sha256:
            self.name, self.expected, self.hash = "sha256", facts.sha256, hashlib.sha256()
        elif facts.git_sha1 and facts.size is not None:
            self.name, self.expected, self.hash = "git sha1", facts.git_sha1, hashlib.sha1()
            self.hash.update(b"blob %d\0" % facts.size)
        else:
            self.name, self.expected, self.hash = "", None, None

    def update(self, data: bytes) -> None:
        if self.hash is not None:
            self.hash.update(data)

    def check(self, part: str) -> None:
        if self.hash is None:
            return
        actual = self.hash.hexdigest()
        if actual != self.expected:
            os.remove(part)
            raise ModelFileError(part, f"downloaded data has {self.name} {actual[:16]}… but the hub publishes "
                                       f"{self.expected[:16]}… (partial file deleted; run again)",
                                 _source(self.facts))


def _hash_existing(part: str, verifier: _Verifier) -> None:
    with open(part, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            verifier.update(block)


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _download_to_part(part: str, facts: HubFileFacts, start: int, progress: ProgressArg) -> tuple[int, _Verifier]:
    """GETs the file from byte ``start`` (HTTP Range) into ``part``; returns the bytes in ``part`` and their hash."""
    verifier = _Verifier(facts)
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        response = urllib.request.urlopen(_request(facts.url, "GET", headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the partial does not fit the file any more: start over
            os.remove(part)
            return _download_to_part(part, facts, 0, progress)
        raise ModelFileError(part, f"download failed: HTTP {error.code} {error.reason}", _source(facts)) from None
    except (urllib.error.URLError, OSError, HTTPException) as error:
        raise ModelFileError(part, f"download failed ({getattr(error, 'reason', None) or error}); "
                                   f"run again to resume", _source(facts)) from None
    if start and response.status == 206 and _range_start(response) != start:  # not the part we asked for
        response.close()
        os.remove(part)
        return _download_to_part(part, facts, 0, progress)
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored Range and sent the whole file: rewrite from the beginning
        if start:
            _hash_existing(part, verifier)
        total = facts.size
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=os.path.basename(part)[: -len(".part")], disable=progress is not True, leave=False)
        written = start
        try:
            with open(part, "ab" if start else "wb") as stream:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    stream.write(block)
                    verifier.update(block)
                    written += len(block)
                    bar.update(len(block))
                    if callable(progress):
                        progress(written, total or 0)
        except (OSError, HTTPException) as error:
            raise ModelFileError(part, f"download interrupted at {written} of {total or '?'} bytes ({error}); "
                                       f"run again to resume", _source(facts)) from None
        finally:
            bar.close()
    return written, verifier


def download_hub_file(repo_id: str, filename: str, dest_dir: str | os.PathLike, *, revision: str = "main",
                      progress: ProgressArg = True, endpoint: str | None = None) -> str:
    """Downloads ``filename`` of ``repo_id`` into ``dest_dir/<basename>`` and returns that path.

    An existing final file is returned as is (only verified downloads ever get the final name). A ``.part``
    file left by an interrupted run is resumed with HTTP Range. The result is checked against the hub's
    published size and sha256 (git sha1 for small non-LFS files) before the atomic rename.
    ``progress``: True for a tqdm bar, False for none, or a callable ``(done_bytes, total_bytes)``.
    """
    dest_dir = os.fspath(dest_dir)
    final = os.path.join(dest_dir, os.path.basename(filename))
    if os.path.isfile(final):
        return final
    facts = fetch_hub_file_facts(repo_id, filename, revision, endpoint, dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    part = final + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    if facts.size is not None and start > facts.size:
        os.remove(part)
        start = 0
    if facts.size is not None and start == facts.size and start > 0:  # complete but not yet verified
        verifier = _Verifier(facts)
        _hash_existing(part, verifier)
        written = start
    else:
        written, verifier = _download_to_part(part, facts, start, progress)
    if facts.size is not None and written != facts.size:
        raise ModelFileError(part, f"download stopped at {written} of {facts.size} bytes; run again to resume",
                             _source(facts))
    verifier.check(part)
    os.replace(part, final)
    return final
