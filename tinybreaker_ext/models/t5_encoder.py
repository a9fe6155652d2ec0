"""T5 v1.1 text encoder that keeps its weights in the file's form and upcasts each one only while its own module runs
(docs/numerics.md "T5 encoder compute"). Hand-written because no library on every host pin upcasts fp8 or GGUF storage
per layer (accelerate's offload hooks move weights but do not change dtypes). The math is transformers'
``T5EncoderModel``, built on the meta device; hooks swap its 0-element placeholder parameters for compute-dtype copies.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import uuid
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Hashable, Iterable, Mapping

import torch

from ..errors import ModelFileError, ParameterError
from ..files.state_dict import (
    dtype_of, find_signature_prefix, nbytes_of, required_shape, shape_of, source_name, with_prefix,
)
from ..params import T5_MODES as MODES
from .ggml_quants import QuantizedTensor
from .t5_policy import conversion_budget, resolve_compute_dtype

FP8_DTYPES = tuple(d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if d)
STORAGE_DTYPES = FP8_DTYPES + (torch.bfloat16, torch.float16, torch.float32, torch.float64)
ACTIVATION_RESERVE_BYTES = 1 << 30  # room left for activations when ``auto`` decides whether weights fit the GPU

EMBEDDING_KEY = "shared.weight"
EMBEDDING_ALIAS = "encoder.embed_tokens.weight"
FINAL_NORM_KEY = "encoder.final_layer_norm.weight"
RELATIVE_BIAS_KEY = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
_BLOCK_INDEX = re.compile(r"^encoder\.block\.(\d+)\.")
T5_LAYOUT = "a T5 encoder in HF T5EncoderModel layout"


def infer_t5_config(state_dict: Mapping[str, torch.Tensor], source: str = "T5 state dict"):
    """transformers' ``T5Config`` of the encoder, from tensor shapes (keys without any outer prefix)."""
    from transformers import T5Config

    need = partial(required_shape, state_dict, source=source, expected=T5_LAYOUT, what="the T5 encoder")
    num_buckets, num_heads = need(RELATIVE_BIAS_KEY)
    inner, d_model = need("encoder.block.0.layer.0.SelfAttention.q.weight")
    if inner % num_heads:
        raise ModelFileError(source, f"q projection width {inner} is not a multiple of {num_heads} heads "
                                     f"(from '{RELATIVE_BIAS_KEY}')")
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in state_dict
    d_ff = need("encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight")[0]
    embedding = EMBEDDING_ALIAS if EMBEDDING_KEY not in state_dict and EMBEDDING_ALIAS in state_dict else EMBEDDING_KEY
    blocks = {int(m.group(1)) for m in map(_BLOCK_INDEX.match, state_dict.keys()) if m}
    # T5's relative_attention_max_distance (128) and layer_norm_epsilon (1e-6) are T5Config's defaults.
    return T5Config(vocab_size=need(embedding)[0], d_model=d_model, d_kv=inner // num_heads, d_ff=d_ff,
                    num_layers=max(blocks) + 1, num_heads=num_heads, relative_attention_num_buckets=num_buckets,
                    dropout_rate=0.0, feed_forward_proj="gated-gelu" if gated else "relu", is_encoder_decoder=False,
                    use_cache=False)


def _upcast(tensor: torch.Tensor | QuantizedTensor, scale: torch.Tensor | None, device: torch.device,
            dtype: torch.dtype) -> torch.Tensor:
    """A stored weight (any storage dtype, or GGUF blocks) in ``dtype`` on ``device``, times its scaled-fp8 factor if
    any (no copy when it already is there in ``dtype``)."""
    tensor = tensor.to(device, non_blocking=True)
    value = tensor.dequantize(dtype) if isinstance(tensor, QuantizedTensor) else tensor.to(dtype)
    return value if scale is None else value * scale.to(value.device, dtype)


@dataclass
class _SwapGroup:
    """One HF sub-layer whose stored weights travel together: ``params`` holds (owner module, parameter name, file
    key); ``sources``, what it reads while it runs (the prefetched device copies in ``stream`` mode)."""
    params: list[tuple[torch.nn.Module, str, str]]
    index: int
    sources: Mapping | None = None


def choose_mode(mode: str, device: torch.device, needed_bytes: int) -> str:
    """Resolve ``auto``: ``cpu`` on a CPU, ``gpu`` if ``needed_bytes`` + a reserve fit the free CUDA memory, else
    ``stream``. Other device types get ``gpu``."""
    if mode not in MODES:
        raise ParameterError("t5_mode", f"'{mode}' is not one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        return "gpu" if torch.cuda.mem_get_info(device)[0] >= needed_bytes + ACTIVATION_RESERVE_BYTES else "stream"
    return "gpu"


def _identity(state_dict: Mapping[str, torch.Tensor], compute_dtype: torch.dtype) -> str:
    path = getattr(state_dict, "path", None)
    if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
        stat = os.stat(path)
        base = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    else:
        base = f"memory:{uuid.uuid4().hex}"
    return f"{base}|{compute_dtype}"


def pin(tensor):
    """A page-locked copy of a CPU tensor (or ``QuantizedTensor``) for asynchronous copies; the tensor itself
    when pinning is refused (not enough lockable memory)."""
    try:
        return tensor.pin_memory()
    except RuntimeError:
        return tensor


class Prefetcher:
    """Copies the next group of weights to the compute device while the current group computes (``stream`` mode): on
    CUDA from pinned host memory on a side stream the compute stream waits on; elsewhere (other accelerators, the meta
    device the tests use) synchronously ahead, the same memory pattern without the overlap. ``take`` returns the
    copies ready for the current stream, or None when nothing was started for that key."""

    def __init__(self, device: torch.device):
        self.device = device
        self._side = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: dict[Hashable, tuple[dict, object]] = {}

    def start(self, key: Hashable, items: Iterable[tuple[str, object]]) -> None:
        if self._side is None:
            self._pending[key] = ({name: value.to(self.device) for name, value in items}, None)
            return
        with torch.cuda.stream(self._side):  # sources are pinned host memory: nothing on the device to wait for
            copies = {name: value.to(self.device, non_blocking=True) for name, value in items}
            event = torch.cuda.Event()
            event.record(self._side)
        self._pending[key] = (copies, event)

    def take(self, key: Hashable) -> dict | None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return None
        copies, event = entry
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for value in copies.values():
                value.record_stream(current)  # allocated on the side stream, freed after use on this one
        return copies

    def clear(self) -> None:
        self._pending.clear()


class T5TextEncoder:
    """``encode(input_ids) -> float32 [B, L, d_model]``: the last hidden state after the final layer norm. Memory held
    is about the file size plus one weight in the compute dtype (84 MB for T5-XXL's feed-forward weights in bf16)."""

    def __init__(self, model: torch.nn.Module, weights: dict[str, torch.Tensor | QuantizedTensor],
                 scales: dict[str, torch.Tensor], *, mode: str, device: torch.device, compute_dtype: torch.dtype,
                 identity: str, converted_bytes: int = 0):
        self.config = model.config
        self.mode = mode
        self.device = device
        self.compute_dtype = compute_dtype
        self.identity = identity
        self.converted_bytes = converted_bytes  # extra bytes held by weights the loader kept converted
        self._weights = weights  # file key → the weight as stored
        self._scales = {key: scale.to(device) for key, scale in scales.items()}  # scaled-fp8 factors: scalars
        self._lock = threading.Lock()  # the swapped-in parameters are shared state: one encode at a time
        self._nan_guard = any(weight.dtype in FP8_DTYPES for key, weight in weights.items()
                              if key == EMBEDDING_KEY or key.startswith("encoder.block.0."))

        model.eval().requires_grad_(False)
        self._placeholder = torch.nn.Parameter(torch.empty(0, dtype=compute_dtype, device="meta"),
                                               requires_grad=False)
        owners = {}
        for module_name, module in model.named_modules():
            for param_name, _ in list(module.named_parameters(recurse=False)):
                owners[f"{module_name}.{param_name}" if module_name else param_name] = (module, param_name)
                module._parameters[param_name] = self._placeholder  # idle state: nothing allocated
        self._model = model

        self._groups: list[_SwapGroup] = []
        for block_index, block in enumerate(model.encoder.block):
            for layer_index, layer in enumerate(block.layer):
                self._add_group(layer, owners, f"encoder.block.{block_index}.layer.{layer_index}.")
        self._add_group(model.encoder.final_layer_norm, owners, FINAL_NORM_KEY[: -len("weight")])
        self._prefetch = Prefetcher(device) if mode == "stream" and device.type != "cpu" else None
        if self._prefetch is not None and device.type == "cuda":  # page-locked: the side stream copies asynchronously
            self._weights = {key: pin(weight) for key, weight in self._weights.items()}

    def _add_group(self, module: torch.nn.Module, owners: dict, prefix: str) -> None:
        params = [(owners[key][0], owners[key][1], key) for key in self._weights if key.startswith(prefix)]
        group = _SwapGroup(params, len(self._groups))
        # A weak reference: hooks owning the encoder would form a cycle that keeps gigabytes alive until gc runs.
        encoder = weakref.ref(self)
        module.register_forward_pre_hook(lambda _module, _args: encoder()._enter(group))
        module.register_forward_hook(lambda _module, _args, _output: encoder()._release(group))
        # Each owner (a Linear, a norm) gets its compute-dtype copy only while it runs: one weight upcast at a time.
        for owner in dict.fromkeys(owner for owner, _, _ in params):  # registered after the group's: runs after it
            owner.register_forward_pre_hook(lambda module, _args: encoder()._swap_in(group, module))
            owner.register_forward_hook(lambda module, _args, _output: encoder()._release(group, module))
        self._groups.append(group)

    def _enter(self, group: _SwapGroup) -> None:
        fetched = None
        if self._prefetch is not None:
            fetched = self._prefetch.take(group.index)
            if group.index + 1 < len(self._groups):  # copy the next sub-layer while this one converts and runs
                following = self._groups[group.index + 1]
                self._prefetch.start(following.index, [(key, self._weights[key]) for _, _, key in following.params])
        group.sources = fetched if fetched is not None else self._weights

    def _swap_in(self, group: _SwapGroup, owner: torch.nn.Module) -> None:
        for module, name, key in group.params:
            if module is owner:
                owner._parameters[name] = _upcast(group.sources[key], self._scales.get(key), self.device,
                                                  self.compute_dtype)

    def _release(self, group: _SwapGroup, owner: torch.nn.Module | None = None) -> None:
        """Puts the placeholders back: ``owner``'s after it ran, the whole group's (and its sources) after the
        group ran (a group's own hooks run before those of an owner that is the group's module itself)."""
        for module, name, _ in group.params:
            if owner is None or module is owner:
                module._parameters[name] = self._placeholder
        if owner is None:
            group.sources = None

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Gather rows in the storage form, then upcast only those (never the whole 32128-row table).
        table = self._weights[EMBEDDING_KEY]
        ids = input_ids.to(table.device)
        if isinstance(table, QuantizedTensor):
            rows = table.rows(ids)
        elif table.dtype in FP8_DTYPES:  # fp8 indexing kernels are missing in older torch; bytes index the same
            rows = table.view(torch.uint8)[ids].view(table.dtype)
        else:
            rows = table[ids]
        embeds = _upcast(rows, self._scales.get(EMBEDDING_KEY), self.device, self.compute_dtype)
        return torch.nan_to_num(embeds) if self._nan_guard else embeds  # fp8 files may hold NaN codes

    def encode(self, input_ids) -> torch.Tensor:
        ids = torch.as_tensor(input_ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ParameterError("input_ids", f"expected a non-empty [batch, length] array, got shape {list(ids.shape)}")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ParameterError("input_ids", f"token id {low if low < 0 else high} is outside the T5 vocabulary "
                                              f"of {self.config.vocab_size}")
        # A1111 runs sampling under fp16 autocast; T5 must not follow it.
        autocast_off = (torch.autocast(device_type=self.device.type, enabled=False)
                        if self.device.type in ("cuda", "cpu") else contextlib.nullcontext())
        with self._lock, torch.no_grad(), autocast_off:
            embeds = self._embed(ids)
            try:
                hidden = self._model(inputs_embeds=embeds)[0]
            finally:
                for group in self._groups:  # an exception inside a sub-layer must not leave copies behind
                    self._release(group)
                if self._prefetch is not None:
                    self._prefetch.clear()
        return hidden.float()

    def _stored_bytes(self, key: str) -> int:
        return self._weights[key].nbytes + (self._scales[key].nbytes if key in self._scales else 0)

    def storage_bytes(self) -> int:
        """Bytes held by the weights as stored (≈ the file's tensor bytes, plus what was kept converted)."""
        return sum(self._stored_bytes(key) for key in self._weights)

    def stored_tensors(self) -> dict[str, torch.Tensor | QuantizedTensor]:
        """File key → the tensor held in storage (its dtype and device show where the weights live)."""
        return dict(self._weights)

    def device_bytes(self) -> int:
        """Bytes of weights on the compute device during an encode: the biggest weight in the compute dtype (each
        is upcast only while its own module runs) plus, in ``stream`` mode, the running sub-layer and the next one
        as stored (the prefetch), otherwise everything held. 0 when the device is the CPU (everything is RAM)."""
        if self.device.type == "cpu":
            return 0
        size = torch.tensor([], dtype=self.compute_dtype).element_size()
        upcast = max(self._weights[key].numel() for group in self._groups for _, _, key in group.params) * size
        if self.mode == "stream":
            stored = [sum(self._stored_bytes(key) for _, _, key in group.params) for group in self._groups]
            return upcast + max(a + b for a, b in zip(stored, stored[1:] + [0]))
        return upcast + self.storage_bytes()


def load_t5_encoder(state_dict: Mapping[str, torch.Tensor], *, mode: str = "auto", device="cpu",
                    compute_dtype: torch.dtype | None = None, keep_converted_bytes: int | None = None) -> T5TextEncoder:
    """From an HF-layout state dict (plain dict or lazy file view; outer prefix allowed) or an open ``GGUFFile``
    (city96's ``t5-v1_1-xxl-encoder`` files). ``keep_converted_bytes`` bounds the extra memory of weights kept
    converted to the compute dtype (None: ``conversion_budget``); the rest are converted at each encode."""
    from transformers import T5EncoderModel

    device = torch.device(device)
    compute_dtype = resolve_compute_dtype(compute_dtype, device)
    source = source_name(state_dict)

    prefix = find_signature_prefix(state_dict.keys(), FINAL_NORM_KEY, RELATIVE_BIAS_KEY)  # '' for a bare encoder file
    if prefix is None:
        raise ModelFileError(source, f"no '{FINAL_NORM_KEY}' with '{RELATIVE_BIAS_KEY}'", T5_LAYOUT)
    encoder_sd = with_prefix(state_dict, prefix) if prefix else state_dict
    config = infer_t5_config(encoder_sd, source)
    with torch.device("meta"):  # the math without memory: T5TextEncoder swaps each weight in while its module runs
        model = T5EncoderModel(config)
    # HF key → shape in execution order, the embedding under ``shared.weight``
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items() if key != EMBEDDING_ALIAS}
    key_map = {key: key for key in expected}  # HF key → the file's key
    if EMBEDDING_KEY not in encoder_sd:
        key_map[EMBEDDING_KEY] = EMBEDDING_ALIAS
    missing = [file_key for file_key in key_map.values() if file_key not in encoder_sd]
    if missing:
        raise ModelFileError(source, f"missing tensor '{prefix}{missing[0]}' ({len(missing)} missing)",
                             f"a complete {config.num_layers}-block T5 encoder")
    # Keys outside ``encoder.`` (a decoder, ``lm_head``) and scaled-fp8 scales are not unexpected.
    unexpected = [key for key in sorted(encoder_sd.keys()) if key.startswith("encoder.") and key not in expected
                  and key != EMBEDDING_ALIAS and not key.endswith((".scale_weight", ".scale_input"))]
    if unexpected:
        raise ModelFileError(source, f"unexpected tensor '{prefix}{unexpected[0]}' ({len(unexpected)} unexpected)",
                             "the HF T5EncoderModel layout (T5 v1.1, relative bias in block 0 only)")
    for key, shape in expected.items():
        file_key = key_map[key]
        got = shape_of(encoder_sd, file_key)
        if got != shape:
            raise ModelFileError(source, f"tensor '{prefix}{file_key}' has shape {list(got)}",
                                 f"{list(shape)} for this T5 (d_model {config.d_model}, {config.num_heads} heads)")
        stored_dtype = dtype_of(encoder_sd, file_key)
        if stored_dtype is not None and stored_dtype not in STORAGE_DTYPES:  # None: GGUF blocks, checked when read
            raise ModelFileError(source, f"tensor '{prefix}{file_key}' has dtype {stored_dtype}",
                                 "fp8, bf16, fp16 or fp32")

    scale_keys = {key: key_map[key][: -len("weight")] + "scale_weight" for key in key_map}
    scale_keys = {key: scale for key, scale in scale_keys.items() if scale in encoder_sd}
    needed = sum(nbytes_of(encoder_sd, key) for key in list(key_map.values()) + list(scale_keys.values()))
    element_size = torch.tensor([], dtype=compute_dtype).element_size()
    largest_weight = max(math.prod(shape) for key, shape in expected.items() if key != EMBEDDING_KEY)
    mode = choose_mode(mode, device, needed + largest_weight * element_size)
    storage_device = device if mode == "gpu" else torch.device("cpu")

    if keep_converted_bytes is None:
        keep_converted_bytes = conversion_budget(mode, device, stored_bytes=needed)
    # Each weight is converted right after it is read, so its stored form is freed before the next is read (converting
    # after reading everything would hold the file and its converted copy at once). A view with ``read_into`` reuses
    # one read buffer: fresh ones, freed between larger allocations, stayed in the C heap (~0.5 GB at T5-XXL's peak).
    read_into = getattr(encoder_sd, "read_into", None)
    buffer = torch.empty(0, dtype=torch.uint8)
    weights, scales = {}, {}
    converted_bytes = 0
    for key, file_key in key_map.items():  # execution order: early sub-layers are kept converted first
        stored_bytes = nbytes_of(encoder_sd, file_key)
        extra = math.prod(shape_of(encoder_sd, file_key)) * element_size - stored_bytes
        # The embedding stays as stored (rows are gathered, then converted); a conversion that saves memory (fp32
        # storage, bf16 compute) always happens.
        convert = (key != EMBEDDING_KEY and converted_bytes + extra <= keep_converted_bytes
                   and not (dtype_of(encoder_sd, file_key) == compute_dtype and key not in scale_keys))
        if convert and read_into is not None:
            if buffer.numel() < stored_bytes:
                buffer = torch.empty(0, dtype=torch.uint8)  # the old one goes before the larger one comes
                buffer = torch.empty(stored_bytes, dtype=torch.uint8)
            tensor = read_into(file_key, buffer).to(storage_device)
        else:
            tensor = encoder_sd[file_key].to(storage_device)
        scale = encoder_sd[scale_keys[key]].to(storage_device) if key in scale_keys else None
        if convert:
            tensor, scale = _upcast(tensor, scale, storage_device, compute_dtype), None
            converted_bytes += extra
        weights[key] = tensor
        if scale is not None:
            scales[key] = scale
        del tensor, scale
    del buffer
    return T5TextEncoder(model, weights, scales, mode=mode, device=device, compute_dtype=compute_dtype,
                         identity=_identity(state_dict, compute_dtype), converted_bytes=converted_bytes)
