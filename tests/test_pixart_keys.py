"""PixArt-Sigma key layouts (docs/model-files.md "PixArt-Sigma layouts"): full-size layout coverage on ``meta``,
config inference, diffusers conversion, lazy reading and error messages."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest
import torch
from safetensors.torch import load_file

from builders.common import save_safetensors
from builders.pixart import FULL_SIZE, pixart_state_dict
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.models.pixart import PixArtConfig, load_pixart
from tinybreaker_ext.models.pixart_keys import detect_pixart_layout


def spec_native_table() -> dict[str, tuple[int, ...]]:
    """The native table of docs/model-files.md "PixArt-Sigma layouts" for PixArt-Sigma-XL-2-1024-MS, written out
    with its literal shapes."""
    table = {
        "x_embedder.proj.weight": (1152, 4, 2, 2), "x_embedder.proj.bias": (1152,),
        "t_embedder.mlp.0.weight": (1152, 256), "t_embedder.mlp.0.bias": (1152,),
        "t_embedder.mlp.2.weight": (1152, 1152), "t_embedder.mlp.2.bias": (1152,),
        "t_block.1.weight": (6912, 1152), "t_block.1.bias": (6912,),
        "y_embedder.y_proj.fc1.weight": (1152, 4096), "y_embedder.y_proj.fc1.bias": (1152,),
        "y_embedder.y_proj.fc2.weight": (1152, 1152), "y_embedder.y_proj.fc2.bias": (1152,),
        "final_layer.scale_shift_table": (2, 1152),
        "final_layer.linear.weight": (32, 1152), "final_layer.linear.bias": (32,),
    }
    for n in range(28):
        b = f"blocks.{n}."
        table.update({
            b + "scale_shift_table": (6, 1152),
            b + "attn.qkv.weight": (3456, 1152), b + "attn.qkv.bias": (3456,),
            b + "attn.proj.weight": (1152, 1152), b + "attn.proj.bias": (1152,),
            b + "cross_attn.q_linear.weight": (1152, 1152), b + "cross_attn.q_linear.bias": (1152,),
            b + "cross_attn.kv_linear.weight": (2304, 1152), b + "cross_attn.kv_linear.bias": (2304,),
            b + "cross_attn.proj.weight": (1152, 1152), b + "cross_attn.proj.bias": (1152,),
            b + "mlp.fc1.weight": (4608, 1152), b + "mlp.fc1.bias": (4608,),
            b + "mlp.fc2.weight": (1152, 4608), b + "mlp.fc2.bias": (1152,),
        })
    return table


def shapes(state_dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


class LazyView(Mapping):
    """Stand-in for a lazy safetensors view: answers shape/dtype without reading and counts tensor reads."""

    def __init__(self, tensors, path="model.safetensors", prefix=""):
        self._tensors = tensors
        self.path = path
        self.prefix = prefix
        self.reads: list[str] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._tensors[key]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)

    def shape(self, key):
        return tuple(self._tensors[key].shape)

    def dtype(self, key):
        return self._tensors[key].dtype


# ---- (e) full-size layouts on meta --------------------------------------------------------------------------

def test_builder_full_size_native_layout_is_the_spec_table():
    assert shapes(pixart_state_dict(**FULL_SIZE, device="meta")) == spec_native_table()


@pytest.mark.parametrize("layout", ["native", "diffusers"])
def test_full_size_layout_is_consumed_exactly(layout, caplog):
    state_dict = pixart_state_dict(**FULL_SIZE, layout=layout, device="meta", dtype=torch.float16,
                                   include_y_embedding=True, include_pos_embed=True)
    with caplog.at_level(logging.WARNING, logger="tinybreaker_ext.models.pixart"):
        model = load_pixart(state_dict, device="meta", dtype=torch.float16)
    assert "unknown PixArt key" not in caplog.text
    assert shapes(model.state_dict()) == spec_native_table()
    assert all(p.device.type == "meta" and p.dtype == torch.float16 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.61e9, rel=0.01)


# ---- (f) config inference ----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["native", "diffusers"])
def test_full_size_config_is_inferred_from_shapes(layout):
    config = PixArtConfig.from_state_dict(pixart_state_dict(**FULL_SIZE, layout=layout, device="meta"))
    assert (config.hidden_size, config.depth, config.num_heads, config.patch_size) == (1152, 28, 16, 2)
    assert (config.in_channels, config.out_channels, config.caption_dim, config.mlp_hidden) == (4, 8, 4096, 4608)
    assert (config.base_size, config.pe_interpolation) == (64, 2.0)


@pytest.mark.parametrize("resolution, base_size, pe_interpolation",
                         [(256, 16, 0.5), (512, 32, 1.0), (1024, 64, 2.0), (2048, 128, 4.0)])
def test_resolution_sets_position_grid(resolution, base_size, pe_interpolation):
    config = PixArtConfig(resolution=resolution)
    assert (config.base_size, config.pe_interpolation) == (base_size, pe_interpolation)


def test_head_count_falls_back_to_one():
    assert PixArtConfig.from_state_dict(pixart_state_dict(hidden=64, depth=1)).num_heads == 1


# ---- (d) diffusers layout gives the same model ---------------------------------------------------------------

def test_layout_detection():
    assert detect_pixart_layout(pixart_state_dict()) == "native"
    assert detect_pixart_layout(pixart_state_dict(layout="diffusers")) == "diffusers"
    with pytest.raises(ModelFileError, match="not a PixArt-Sigma"):
        detect_pixart_layout({"model.diffusion_model.out.2.weight": torch.zeros(1)})


def test_diffusers_keys_load_the_native_tensors():
    native = load_pixart(pixart_state_dict(include_y_embedding=True)).state_dict()
    converted = load_pixart(pixart_state_dict(layout="diffusers", include_y_embedding=True)).state_dict()
    assert converted.keys() == native.keys()
    assert all(torch.equal(converted[key], native[key]) for key in native)


def test_diffusers_file_gives_the_same_output_as_native_file(tiny_pixart_files):
    native_path, diffusers_path = tiny_pixart_files
    generator = torch.Generator().manual_seed(0)
    x, context = torch.randn(2, 4, 6, 8, generator=generator), torch.randn(2, 9, 32, generator=generator)
    timesteps = torch.tensor([900.0, 3.0])
    outputs = [load_pixart(load_file(path))(x, timesteps, context) for path in (native_path, diffusers_path)]
    assert torch.equal(outputs[0], outputs[1])
    assert outputs[0].abs().max() > 0.1


# ---- lazy reading ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["native", "diffusers"])
def test_lazy_view_is_read_once_per_tensor_and_ignored_keys_never(layout):
    tensors = pixart_state_dict(layout=layout, dtype=torch.float16, include_y_embedding=True, include_pos_embed=True)
    view = LazyView(tensors)
    model = load_pixart(view, dtype=torch.float32)
    ignored = {"y_embedder.y_embedding", "pos_embed", "caption_projection.y_embedding", "pos_embed.pos_embed"}
    assert sorted(view.reads) == sorted(key for key in tensors if key not in ignored)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model.blocks[0].mlp.fc1.weight,
                       pixart_state_dict(dtype=torch.float16)["blocks.0.mlp.fc1.weight"].float())


# ---- (g) errors ----------------------------------------------------------------------------------------------

def test_missing_native_key_names_the_stored_key_and_file():
    tensors = pixart_state_dict()
    del tensors["blocks.1.cross_attn.kv_linear.weight"]
    view = LazyView(tensors, path="tb.safetensors", prefix="base.diffusion_model.")
    with pytest.raises(ModelFileError, match=r"^tb\.safetensors: .*missing "
                                             r"base\.diffusion_model\.blocks\.1\.cross_attn\.kv_linear\.weight"):
        load_pixart(view)


def test_missing_diffusers_key_names_the_diffusers_key():
    tensors = pixart_state_dict(layout="diffusers")
    del tensors["transformer_blocks.0.attn1.to_k.weight"]
    with pytest.raises(ModelFileError, match=r"missing transformer_blocks\.0\.attn1\.to_k\.weight"):
        load_pixart(tensors)


def test_many_missing_keys_are_summarised_on_one_line():
    tensors = {k: v for k, v in pixart_state_dict().items() if not k.startswith("blocks.0.")}
    with pytest.raises(ModelFileError) as error:
        load_pixart(tensors)
    message = str(error.value)
    assert "\n" not in message and "blocks.0.scale_shift_table" in message and "more" in message


def test_wrong_shape_names_the_key():
    tensors = pixart_state_dict()
    tensors["blocks.1.mlp.fc2.weight"] = torch.zeros(144, 100)
    with pytest.raises(ModelFileError, match=r"blocks\.1\.mlp\.fc2\.weight has shape \[144, 100\]"):
        load_pixart(tensors)


def test_unknown_keys_are_reported_and_skipped(caplog):
    tensors = pixart_state_dict()
    tensors["csize_embedder.mlp.0.weight"] = torch.zeros(3)
    with caplog.at_level(logging.WARNING, logger="tinybreaker_ext.models.pixart"):
        load_pixart(tensors)
    assert "ignoring 1 unknown PixArt key(s): csize_embedder.mlp.0.weight" in caplog.text


def test_file_round_trip_through_safetensors(tmp_path):
    path = save_safetensors(pixart_state_dict(dtype=torch.float16), tmp_path / "base.safetensors")
    model = load_pixart(load_file(path), dtype=torch.float32)
    assert model.config.depth == 2 and model.final_layer.linear.weight.dtype == torch.float32
