"""download_hub_file (huggingface_hub underneath) against a fake hub on 127.0.0.1: fresh, resumed, and one-line
failures that say where to put the file by hand."""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tinybreaker_ext.errors import ModelNotFoundError
from tinybreaker_ext.files.download import download_hub_file
from tinybreaker_ext.files.known_files import KNOWN_FILES

REPO = "someone/TinyThing"
PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)  # several chunks and a ragged end


def _gets(hub):
    return [(path, headers) for method, path, headers in hub.requests if method == "GET"]


def _visible_files(folder) -> list[str]:
    """The files under ``folder``, without the hub's own bookkeeping in ``.cache``."""
    return sorted(os.path.relpath(os.path.join(root, name), folder) for root, dirs, names in os.walk(folder)
                  for name in names if not os.path.relpath(root, folder).startswith(".cache"))


def test_fresh_lfs_download_lands_under_its_repo_path(fake_hub, tmp_path):
    fake_hub.add(REPO, "weights/model.safetensors", PAYLOAD)
    path = download_hub_file(REPO, "weights/model.safetensors", tmp_path / "dest", endpoint=fake_hub.endpoint,
                             progress=False)
    assert path == str(tmp_path / "dest" / "weights" / "model.safetensors")
    assert not os.path.islink(path) and open(path, "rb").read() == PAYLOAD
    assert _visible_files(tmp_path / "dest") == [os.path.join("weights", "model.safetensors")]
    assert any(path.startswith("/cdn/") for path, _ in _gets(fake_hub))  # followed the LFS redirect


def test_plain_git_file_downloads(fake_hub, tmp_path):
    fake_hub.add(REPO, "tokenizer_config.json", b'{"tokenizer_class": "T5Tokenizer"}', lfs=False)
    path = download_hub_file(REPO, "tokenizer_config.json", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == b'{"tokenizer_class": "T5Tokenizer"}'


def test_an_interrupted_transfer_resumes_where_it_stopped(fake_hub, tmp_path):
    payload = os.urandom(12 * 1024 * 1024)  # the hub writes 10 MiB chunks: resuming needs one written before the drop
    fake_hub.add(REPO, "model.safetensors", payload)
    fake_hub.drop_after = dropped_at = 11 * 1024 * 1024
    try:  # newer hubs retry within the call, older ones leave the partial file for the next call
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    except ModelNotFoundError as error:
        assert "\n" not in str(error)
    path = download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == payload
    resumed_from = [int(headers["Range"][6:-1]) for _, headers in _gets(fake_hub) if "Range" in headers]
    assert resumed_from and 0 < resumed_from[-1] <= dropped_at


def test_missing_file_is_one_clear_error(fake_hub, tmp_path):
    with pytest.raises(ModelNotFoundError) as caught:
        download_hub_file(REPO, "text_encoders/t5.safetensors", tmp_path / "te", endpoint=fake_hub.endpoint)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"'text_encoders/t5.safetensors' of hub repo {REPO} (revision main) not found")
    assert f"{fake_hub.endpoint}/{REPO}/blob/main/text_encoders/t5.safetensors" in message and "HTTP 404" in message
    assert message.endswith(f"and put it in {tmp_path / 'te' / 'text_encoders'}")
    assert _visible_files(tmp_path / "te") == []  # the hub may leave its lock files in .cache


@pytest.mark.parametrize("status, error_code, reason", [
    (403, "GatedRepo", "a gated repo: accept its terms on the hub and set HF_TOKEN"),
    (401, "RepoNotFound", "no such repo, or a private one: set HF_TOKEN"),
])
def test_gated_or_private_repo_mentions_hf_token(fake_hub, tmp_path, status, error_code, reason):
    fake_hub.status_override, fake_hub.error_code = status, error_code
    with pytest.raises(ModelNotFoundError, match=re.escape(reason)):
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint)


def test_offline_is_one_clear_error(loopback_only, tmp_path, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # newer hubs retry with back-off: skip the waits
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelNotFoundError) as caught:
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=f"http://127.0.0.1:{port}")
    message = str(caught.value)
    assert f"cannot reach http://127.0.0.1:{port}" in message and "put it in" in message and "\n" not in message


def test_hf_hub_offline_is_honoured_and_said(tmp_path):
    # the hub reads HF_HUB_OFFLINE when it is imported: a fresh interpreter
    script = ("from tinybreaker_ext.files.download import download_hub_file\n"
              f"download_hub_file({REPO!r}, 'model.safetensors', {str(tmp_path)!r})")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert "HF_HUB_OFFLINE is set: downloads are off" in result.stderr.strip().splitlines()[-1]


def test_hf_endpoint_is_read_at_each_call_and_the_token_is_sent(fake_hub, tmp_path, monkeypatch):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint + "/")  # set after huggingface_hub was imported
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    download_hub_file(REPO, "model.safetensors", tmp_path, progress=False)
    hub_requests = [headers for _, path, headers in fake_hub.requests if "/resolve/" in path]
    cdn_requests = [headers for _, path, headers in fake_hub.requests if path.startswith("/cdn/")]
    assert hub_requests and all(headers.get("Authorization") == "Bearer hf_secret" for headers in hub_requests)
    assert cdn_requests and all("Authorization" not in headers for headers in cdn_requests)


def test_revision_is_part_of_the_url(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD, revision="v2")
    download_hub_file(REPO, "model.safetensors", tmp_path, revision="v2", endpoint=fake_hub.endpoint, progress=False)
    assert fake_hub.requests[0][1] == f"/{REPO}/resolve/v2/model.safetensors"


def test_no_progress_silences_the_hubs_bars_for_this_call_only(fake_hub, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import are_progress_bars_disabled

    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    real_download, seen = huggingface_hub.hf_hub_download, []

    @functools.wraps(real_download)  # the same signature: download_hub_file checks it
    def recording(*args, **kwargs):
        seen.append(are_progress_bars_disabled())
        return real_download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    before = are_progress_bars_disabled()
    download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert seen == [True] and are_progress_bars_disabled() is before


def test_registry_names_the_files_users_need():
    by_role = {file.role: file for file in KNOWN_FILES}
    assert len(by_role) == len(KNOWN_FILES) == 2
    t5, checkpoint = by_role["t5"], by_role["checkpoint"]
    assert (t5.repo_id, t5.filename) == ("Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/t5xxl_fp8_e4m3fn.safetensors")
    assert (checkpoint.repo_id, os.path.basename(checkpoint.filename)) == (
        "martin-rizzo/TinyBreaker.prototype1", "tinybreaker_prototype1.safetensors")
    assert t5.destination("/m") == os.path.join("/m", "text_encoder")
