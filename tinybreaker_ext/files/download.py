"""Download one file from the Hugging Face Hub into a folder with ``huggingface_hub.hf_hub_download`` (resumable,
size-checked, honours ``HF_TOKEN``, proxies and ``HF_HUB_DISABLE_PROGRESS_BARS``), plus the fixes for old hubs below
and one-line errors that say where to put the file by hand. No hash check: ``KNOWN_FILES`` publishes no hashes, and
every file is checked by its reader before use (safetensors header and offsets, tokenizer contents).
"""

from __future__ import annotations

import inspect
import os

from ..errors import ModelNotFoundError

DEFAULT_ENDPOINT = "https://huggingface.co"

# Why the hub failed, by the class names of the exception and its causes (the classes moved between
# huggingface_hub.utils and .errors across versions); the first match wins, so subclasses and causes come first.
_REASONS = (
    ("OfflineModeIsEnabled", "HF_HUB_OFFLINE is set: downloads are off"),
    ("LocalEntryNotFoundError", "cannot reach {endpoint}"),
    ("GatedRepoError", "not accessible (a gated repo: accept its terms on the hub and set HF_TOKEN)"),
    ("RepositoryNotFoundError", "not accessible (no such repo, or a private one: set HF_TOKEN)"),
    ("RevisionNotFoundError", "no such revision on the hub"),
    ("EntryNotFoundError", "not on the hub (HTTP 404)"),
)


def download_hub_file(repo_id: str, filename: str, dest_dir: str | os.PathLike, *, revision: str = "main",
                      progress: bool = True, endpoint: str | None = None) -> str:
    """Downloads ``filename`` of ``repo_id`` to ``dest_dir/filename`` (the repo's subfolders kept, as the hub does)
    and returns that path, or raises a one-line ModelNotFoundError. ``progress``: show the hub's progress bar."""
    import huggingface_hub
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    dest_dir = os.fspath(dest_dir)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    options = {"revision": revision, "local_dir": dest_dir}
    if endpoint and "endpoint" in inspect.signature(huggingface_hub.hf_hub_download).parameters:
        options["endpoint"] = endpoint.rstrip("/")  # hub 0.14 has no endpoint argument: it read HF_ENDPOINT at import
    hub_version = tuple(int(part) for part in huggingface_hub.__version__.split(".")[:2] if part.isdigit())
    if hub_version < (0, 23):  # older hubs link local_dir files into their cache and restart partial downloads
        options.update(local_dir_use_symlinks=False, resume_download=True)
    silence = not progress and not are_progress_bars_disabled()
    if silence:
        disable_progress_bars()
    try:
        return huggingface_hub.hf_hub_download(repo_id, filename, **options)
    except (OSError, ValueError) as error:  # the hub's HTTP, offline and size-check errors are OSErrors
        raise _one_line_error(error, repo_id, filename, revision, endpoint or DEFAULT_ENDPOINT, dest_dir) from None
    finally:
        if silence:
            enable_progress_bars()


def _one_line_error(error: Exception, repo_id: str, filename: str, revision: str, endpoint: str,
                    dest_dir: str) -> ModelNotFoundError:
    names, cause, seen = set(), error, set()
    while cause is not None and id(cause) not in seen:  # the hub raises "not found locally" from why it was not online
        seen.add(id(cause))
        names.update(cls.__name__ for cls in type(cause).__mro__)
        cause = cause.__cause__ or cause.__context__
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    reason = next((text for name, text in _REASONS if name in names), f"download failed ({first_line})")
    url = f"{endpoint.rstrip('/')}/{repo_id}/blob/{revision}/{filename}"
    return ModelNotFoundError(f"'{filename}' of hub repo {repo_id} (revision {revision})", [url],
                              f"{reason.format(endpoint=endpoint)}; download it by hand from there and put it in "
                              f"{os.path.normpath(os.path.join(dest_dir, os.path.dirname(filename)))}")
