"""Tiny model files in the key layouts the classifier recognises, broken files, and a fake Hugging Face Hub.

The state dicts here are minimal: they hold each layout's signature keys (marked ``# signature``) plus a few
representative keys under the right prefixes, with tiny tensors. Full-layout builders live with each model area.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from builders.common import prefixed, random_tensor, save_safetensors

HIDDEN = 8


def _t(*shape, dtype=torch.float16, seed=0):
    return random_tensor(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# --- component key sets ----------------------------------------------------------------------------------------------
def pixart_keys(layout: str = "native") -> dict[str, torch.Tensor]:
    if layout == "native":
        return {
            "x_embedder.proj.weight": _t(HIDDEN, 4, 2, 2),
            "t_embedder.mlp.0.weight": _t(HIDDEN, 16),  # signature
            "t_block.1.weight": _t(6 * HIDDEN, HIDDEN),
            "blocks.0.attn.qkv.weight": _t(3 * HIDDEN, HIDDEN),
            "final_layer.scale_shift_table": _t(2, HIDDEN),  # signature
            "final_layer.linear.weight": _t(32, HIDDEN),
        }
    return {
        "pos_embed.proj.weight": _t(HIDDEN, 4, 2, 2),
        "adaln_single.emb.timestep_embedder.linear_2.bias": _t(HIDDEN),  # signature
        "adaln_single.linear.weight": _t(6 * HIDDEN, HIDDEN),
        "transformer_blocks.0.attn1.to_q.weight": _t(HIDDEN, HIDDEN),
        "scale_shift_table": _t(2, HIDDEN),  # signature
        "proj_out.weight": _t(32, HIDDEN),
    }


def taesd_encoder_keys(channels: int = 4) -> dict[str, torch.Tensor]:
    """Native TAESD encoder half: index 0 conv(3→c), 1 and 3 residual Blocks, 2 a strided conv, 14 conv(c→4)."""
    return {"0.weight": _t(channels, 3, 3, 3), "0.bias": _t(channels),
            "1.conv.0.weight": _t(channels, channels, 3, 3), "1.conv.0.bias": _t(channels),
            "2.weight": _t(channels, channels, 3, 3),
            "3.conv.0.weight": _t(channels, channels, 3, 3), "3.conv.0.bias": _t(channels),
            "14.weight": _t(4, channels, 3, 3)}


def taesd_decoder_keys(channels: int = 4, shift: int = 0) -> dict[str, torch.Tensor]:
    """Native TAESD decoder half (index 0 is the parameter-less clamp); ``shift=-1`` gives diffusers indices."""
    return {f"{1 + shift}.weight": _t(channels, 4, 3, 3), f"{1 + shift}.bias": _t(channels),
            f"{3 + shift}.conv.0.weight": _t(channels, channels, 3, 3), f"{3 + shift}.conv.0.bias": _t(channels),
            f"{19 + shift}.weight": _t(3, channels, 3, 3)}


def transcoder_keys() -> dict[str, torch.Tensor]:
    keys = {**prefixed(taesd_decoder_keys(), "transd."), **prefixed(taesd_encoder_keys(), "transe.")}
    keys.update({"in_emu.scale_factor": torch.tensor(0.13025, dtype=torch.float16),
                 "out_emu.scale_factor": torch.tensor(0.18215, dtype=torch.float16)})
    return keys  # signature: transd.3.conv.0.bias + transe.3.conv.0.weight


def kl_decoder_keys() -> dict[str, torch.Tensor]:
    return {"decoder.conv_in.weight": _t(HIDDEN, 4, 3, 3), "decoder.conv_out.weight": _t(3, HIDDEN, 3, 3),
            "post_quant_conv.weight": _t(4, 4, 1, 1)}


def t5_keys(dtype: torch.dtype = torch.bfloat16, *, scaled: str | None = None,
            embedding_key: str = "shared.weight") -> dict[str, torch.Tensor]:
    """T5 encoder keys (HF layout).
    ``scaled``: None, "marker" (a ``scaled_fp8`` key) or "per_tensor" (``.scale_weight`` keys)."""
    block = "encoder.block.0.layer.0.SelfAttention."
    keys = {
        embedding_key: _t(32, HIDDEN, dtype=torch.float32).to(dtype),  # signature (either embedding key)
        block + "q.weight": _t(HIDDEN, HIDDEN, dtype=torch.float32).to(dtype),  # signature
        block + "k.weight": _t(HIDDEN, HIDDEN, dtype=torch.float32).to(dtype),
        block + "relative_attention_bias.weight": _t(32, 2, dtype=torch.float32),
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight": _t(16, HIDDEN, dtype=torch.float32).to(dtype),
        "encoder.final_layer_norm.weight": torch.ones(HIDDEN),
    }
    if scaled == "marker":
        keys["scaled_fp8"] = torch.zeros(0, dtype=dtype)
    elif scaled == "per_tensor":
        keys[block + "q.scale_weight"] = torch.tensor(0.5)
    return keys


def tinybreaker_keys(prototype: int = 1, pixart_layout: str = "native") -> dict[str, torch.Tensor]:
    """Minimal prototype0/1 file: every top-level prefix of docs/model-files.md "TinyBreaker checkpoints" with
    representative keys.
    The prototype markers are ``first_stage_hqmodel.*`` (0) and ``refiner.first_stage_model.*`` (1)."""
    keys = {
        **prefixed(pixart_keys(pixart_layout), "base.diffusion_model."),
        "refiner.diffusion_model.input_blocks.0.0.weight": _t(HIDDEN, 4, 3, 3),
        "refiner.diffusion_model.time_embed.0.weight": _t(HIDDEN, HIDDEN),
        "refiner.conditioner.text_model.embeddings.token_embedding.weight": _t(16, HIDDEN),
        **prefixed(taesd_encoder_keys(), "first_stage_model.encoder."),
        "first_stage_model.encoder.vae_scale": torch.tensor(0.13025, dtype=torch.float16),
        **prefixed(transcoder_keys(), "transcoder."),
    }
    if prototype == 0:
        keys.update(prefixed(taesd_decoder_keys(), "first_stage_model.decoder."))
        keys.update(prefixed(kl_decoder_keys(), "first_stage_hqmodel."))
    else:
        keys.update(prefixed(kl_decoder_keys(), "first_stage_model."))
        keys.update(prefixed(taesd_encoder_keys(), "refiner.first_stage_model.encoder."))
        keys.update(prefixed(taesd_decoder_keys(), "refiner.first_stage_model.decoder."))
    return keys


def tinybreaker_sdxl_keys(pixart_layout: str = "native") -> dict[str, torch.Tensor]:
    """Minimal TinyBreaker file with an SDXL refiner: the SDXL UNet's label_emb marks it, both SDXL text encoders
    under ``refiner.conditioner.embedders.{0,1}.``, the main VAE, no transcoder."""
    return {
        **prefixed(pixart_keys(pixart_layout), "base.diffusion_model."),
        "refiner.diffusion_model.input_blocks.0.0.weight": _t(HIDDEN, 4, 3, 3),
        "refiner.diffusion_model.label_emb.0.0.weight": _t(HIDDEN, 2816),
        "refiner.conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": _t(16, HIDDEN),
        "refiner.conditioner.embedders.1.model.token_embedding.weight": _t(16, HIDDEN),
        **prefixed(taesd_encoder_keys(), "first_stage_model.encoder."),
        **prefixed(kl_decoder_keys(), "first_stage_model."),
    }


TINYBREAKER_METADATA = {"modelspec.architecture": "TinyBreaker", "modelspec.title": "TinyBreaker prototype1"}


def sd1_checkpoint_keys() -> dict[str, torch.Tensor]:
    return {"model.diffusion_model.input_blocks.0.0.weight": _t(HIDDEN, 4, 3, 3),
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": _t(16, HIDDEN),
            "first_stage_model.decoder.conv_in.weight": _t(HIDDEN, 4, 3, 3)}


# --- files on disk ---------------------------------------------------------------------------------------------------
def write_model(path, state_dict, metadata=None) -> str:
    return save_safetensors(state_dict, path, metadata)


def write_pickle_checkpoint(path) -> str:
    """Bytes of a pickled dict (like a renamed .ckpt); written, never loaded."""
    with open(path, "wb") as stream:
        stream.write(pickle.dumps({"state_dict": {"w": [0.0] * 64}}, protocol=4))
    return os.fspath(path)


def write_truncated_copy(source, path, missing_bytes: int) -> str:
    with open(source, "rb") as stream:
        data = stream.read()
    with open(path, "wb") as stream:
        stream.write(data[:-missing_bytes])
    return os.fspath(path)


def write_t5_tokenizer_json(folder) -> str:
    """A minimal tokenizer.json with the structure of T5's (Unigram model, <pad>/</s>/<unk> added tokens)."""
    os.makedirs(folder, exist_ok=True)
    specials = ["<pad>", "</s>", "<unk>"]
    added = [{"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, token in enumerate(specials)]
    content = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
               "normalizer": None, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁"},
               "post_processor": None, "decoder": None,
               "model": {"type": "Unigram", "unk_id": 2, "vocab": [[t, 0.0] for t in specials] + [["▁a", -1.0]]}}
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(content, stream)
    return path


def write_clip_tokenizer_json(folder) -> str:
    os.makedirs(folder, exist_ok=True)
    content = {"version": "1.0", "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": True}],
               "model": {"type": "BPE", "vocab": {"a</w>": 1}, "merges": []}}
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as stream:
        json.dump(content, stream)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as stream:
        json.dump({"tokenizer_class": "CLIPTokenizer"}, stream)
    return os.fspath(folder)


# --- a fake Hugging Face Hub on 127.0.0.1 ----------------------------------------------------------------------------
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True
    published_size: int | None = None


@dataclass
class FakeHub:
    """Emulates ``HEAD/GET /{repo}/resolve/{rev}/{file}`` with the headers ``hf_hub_download`` needs (X-Repo-Commit,
    an ETag, the size): LFS files answer 302 + X-Linked-Size/X-Linked-Etag and are served (with Range) from
    ``cdn_endpoint/cdn/<sha256>``; plain files answer 200 with the git-blob ETag.
    Knobs: ``drop_after`` closes the connection after that many body bytes (once); ``ignore_range`` answers 200;
    ``status_override`` (+ ``error_code``) answers every request with that status."""

    files: dict[tuple[str, str, str], HubFile] = field(default_factory=dict)
    requests: list[tuple[str, str, Message]] = field(default_factory=list)  # headers: case-insensitive
    drop_after: int | None = None
    ignore_range: bool = False
    status_override: int | None = None
    error_code: str | None = None  # the hub's X-Error-Code sent with status_override (GatedRepo, RepoNotFound)

    def add(self, repo_id: str, filename: str, data: bytes, *, revision: str = "main", lfs: bool = True,
            **publish) -> HubFile:
        self.files[(repo_id, revision, filename)] = HubFile(data, lfs, **publish)
        return self.files[(repo_id, revision, filename)]

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        """The same server under another host name: the hub follows a redirect only when it leaves the hub's host."""
        return f"http://localhost:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _lookup_cdn(self, digest: str) -> HubFile | None:
        return next((f for f in self.files.values() if hashlib.sha256(f.data).hexdigest() == digest), None)

    def _handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = urllib.parse.unquote(handler.path)
        self.requests.append(("HEAD" if head else "GET", path, handler.headers))
        if self.status_override:
            headers = {"X-Error-Code": self.error_code} if self.error_code else {}
            return self._reply(handler, self.status_override, headers, b"", head)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if match:
            item = self.files.get((match.group(1), match.group(2), match.group(3)))
            if item is None:
                return self._reply(handler, 404, {"X-Error-Code": "EntryNotFound"}, b"Entry not found", head)
            sha256 = hashlib.sha256(item.data).hexdigest()
            size = item.published_size if item.published_size is not None else len(item.data)
            if item.lfs:
                headers = {"Location": f"{self.cdn_endpoint}/cdn/{sha256}", "X-Linked-Size": str(size),
                           "X-Linked-Etag": f'"{sha256}"', "ETag": f'"{sha256}"',
                           "X-Repo-Commit": "0" * 40}
                return self._reply(handler, 302, headers, b"", head)
            return self._serve(handler, item.data, head,
                               {"ETag": f'"{git_blob_sha1(item.data)}"', "X-Repo-Commit": "0" * 40})
        match = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
        item = self._lookup_cdn(match.group(1)) if match else None
        if item is None:
            return self._reply(handler, 404, {}, b"not found", head)
        self._serve(handler, item.data, head, {})

    def _serve(self, handler, data: bytes, head: bool, headers: dict[str, str]) -> None:
        start = 0
        wanted = handler.headers.get("Range")
        status = 200
        if wanted and not self.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                return self._reply(handler, 416, {"Content-Range": f"bytes */{len(data)}"}, b"", head)
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        body = data[start:]
        if self.drop_after is not None and not head:
            handler.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body[: self.drop_after])
            handler.wfile.flush()
            self.drop_after = None
            handler.close_connection = True
            return
        self._reply(handler, status, headers, body, head)

    @staticmethod
    def _reply(handler, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        handler.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(body)


def found_paths(finder, role: str) -> list[str]:
    """The paths a ModelFinder lists for ``role``."""
    return [info.path for info in finder.candidates(role)]
