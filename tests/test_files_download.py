"""download_hub_file against a fake hub on 127.0.0.1: fresh, resumed, verified, and clear failures."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest

from tinybreaker_ext.errors import ModelFileError, ModelNotFoundError
from tinybreaker_ext.files.download import download_hub_file, hub_file_url
from tinybreaker_ext.files.known_files import KNOWN_FILES

REPO = "someone/TinyThing"
PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)  # several 1 MiB chunks and a ragged end


def _gets(hub):
    return [(path, headers) for method, path, headers in hub.requests if method == "GET"]


def test_fresh_lfs_download_is_verified_and_renamed(fake_hub, tmp_path):
    fake_hub.add(REPO, "weights/model.safetensors", PAYLOAD)
    seen = []
    path = download_hub_file(REPO, "weights/model.safetensors", tmp_path / "dest", endpoint=fake_hub.endpoint,
                             progress=lambda done, total: seen.append((done, total)))
    assert path == str(tmp_path / "dest" / "model.safetensors")
    assert open(path, "rb").read() == PAYLOAD
    assert os.listdir(tmp_path / "dest") == ["model.safetensors"]  # no .part left behind
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [m for m, _, _ in fake_hub.requests][:1] == ["HEAD"]
    assert all("Range" not in headers for _, headers in _gets(fake_hub))


def test_plain_git_file_is_verified_by_git_blob_sha1(fake_hub, tmp_path):
    fake_hub.add(REPO, "tokenizer_config.json", b'{"tokenizer_class": "T5Tokenizer"}', lfs=False)
    path = download_hub_file(REPO, "tokenizer_config.json", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == b'{"tokenizer_class": "T5Tokenizer"}'


def test_partial_download_resumes_with_range(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    half = len(PAYLOAD) // 2
    (tmp_path / "model.safetensors.part").write_bytes(PAYLOAD[:half])
    path = download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == PAYLOAD
    ranges = [headers.get("Range") for _, headers in _gets(fake_hub)]
    assert f"bytes={half}-" in ranges


def test_interrupted_download_keeps_the_part_and_the_next_run_finishes(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    fake_hub.drop_after = 1_500_000
    with pytest.raises(ModelFileError, match=r"download stopped at 1500000 of \d+ bytes; run again to resume"):
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert os.path.getsize(tmp_path / "model.safetensors.part") == 1_500_000
    assert not (tmp_path / "model.safetensors").exists()
    path = download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert _gets(fake_hub)[-1][1].get("Range") == "bytes=1500000-"


def test_server_ignoring_range_restarts_from_zero(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    fake_hub.ignore_range = True
    (tmp_path / "model.safetensors.part").write_bytes(b"\0" * 1000)
    path = download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == PAYLOAD


def test_sha256_mismatch_is_rejected_and_the_part_deleted(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD, published_sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ModelFileError) as caught:
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    message = str(caught.value)
    assert "sha256" in message and hashlib.sha256(b"other").hexdigest()[:16] in message and "\n" not in message
    assert os.listdir(tmp_path) == []


def test_corrupt_partial_is_caught_by_the_hash(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    (tmp_path / "model.safetensors.part").write_bytes(b"\xff" * 4096)  # right length to resume, wrong bytes
    with pytest.raises(ModelFileError, match="sha256"):
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    path = download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert open(path, "rb").read() == PAYLOAD


def test_size_mismatch_is_rejected(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD, published_size=len(PAYLOAD) + 10)
    with pytest.raises(ModelFileError, match="download stopped at"):
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint, progress=False)
    assert not (tmp_path / "model.safetensors").exists()


def test_missing_file_is_one_clear_error(fake_hub, tmp_path):
    with pytest.raises(ModelNotFoundError) as caught:
        download_hub_file(REPO, "text_encoders/t5.safetensors", tmp_path / "te", endpoint=fake_hub.endpoint)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"'text_encoders/t5.safetensors' of hub repo {REPO} (revision main) not found")
    assert hub_file_url(REPO, "text_encoders/t5.safetensors", endpoint=fake_hub.endpoint) in message
    assert "HTTP 404" in message and f"{fake_hub.endpoint}/{REPO}/blob/main/text_encoders/t5.safetensors" in message
    assert message.endswith(f"and put it in {tmp_path / 'te'}")
    assert not (tmp_path / "te").exists()


def test_gated_repo_mentions_hf_token(fake_hub, tmp_path):
    fake_hub.status_override = 401
    with pytest.raises(ModelNotFoundError, match="HF_TOKEN"):
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint)


def test_offline_is_one_clear_error(loopback_only, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelNotFoundError) as caught:
        download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=f"http://127.0.0.1:{port}")
    message = str(caught.value)
    assert f"cannot reach http://127.0.0.1:{port}" in message and "put it in" in message and "\n" not in message


def test_hf_endpoint_environment_and_token_are_used(fake_hub, tmp_path, monkeypatch):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint + "/")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    download_hub_file(REPO, "model.safetensors", tmp_path, progress=False)
    hub_requests = [h for _, p, h in fake_hub.requests if "/resolve/" in p]
    cdn_requests = [h for _, p, h in fake_hub.requests if p.startswith("/cdn/")]
    assert hub_requests and all(h.get("Authorization") == "Bearer hf_secret" for h in hub_requests)
    assert cdn_requests and all("Authorization" not in h for h in cdn_requests)


def test_revision_is_part_of_the_url(fake_hub, tmp_path):
    fake_hub.add(REPO, "model.safetensors", PAYLOAD, revision="v2")
    download_hub_file(REPO, "model.safetensors", tmp_path, revision="v2", endpoint=fake_hub.endpoint, progress=False)
    assert fake_hub.requests[0][1] == f"/{REPO}/resolve/v2/model.safetensors"


def test_existing_final_file_is_returned_without_network(fake_hub, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"already here")
    path = download_hub_file(REPO, "model.safetensors", tmp_path, endpoint=fake_hub.endpoint)
    assert open(path, "rb").read() == b"already here" and fake_hub.requests == []


def test_registry_names_the_files_users_need():
    by_role = {file.role: file for file in KNOWN_FILES}
    assert len(by_role) == len(KNOWN_FILES) == 2
    t5, checkpoint = by_role["t5"], by_role["checkpoint"]
    assert (t5.repo_id, t5.filename) == ("Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/t5xxl_fp8_e4m3fn.safetensors")
    assert (checkpoint.repo_id, checkpoint.local_name) == (
        "martin-rizzo/TinyBreaker.prototype1", "tinybreaker_prototype1.safetensors")
    assert t5.destination("/m") == os.path.join("/m", "text_encoder")
