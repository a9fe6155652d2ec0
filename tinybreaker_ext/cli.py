"""Command line: ``python -m tinybreaker_ext "a prompt --aspect 3:2" -o out.png``.

Runs the whole reference pipeline without a WebUI (T5 → PixArt-Sigma → transcoder → embedded SD1 refiner →
SD1 decoder) and writes PNGs whose ``parameters`` text is A1111-style infotext, so the WebUI's PNG Info reads it.
The options are the WebUI's TinyBreaker fields (``params.FIELDS``, one option each) plus the txt2img ones (size,
seed, batch); the prompt accepts TinyBreaker's inline parameters (``--style``, ``--aspect``, ``--seed`` …), which
win over the options, as in the WebUI.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import params
from .errors import TinyBreakerError

# Fields that are not options: the switch itself, files (given as paths below), the WebUI-only refine choice.
_NOT_OPTIONS = {"enabled", "checkpoint", "t5_file", "refine_sampler"}
_ALIASES = {"base_steps": ["--steps"], "base_cfg": ["--cfg"]}  # the first command line's names, kept


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tinybreaker_ext",
        description="TinyBreaker without a WebUI: PixArt-Sigma composes, the SD1 refiner in the checkpoint finishes.")
    parser.add_argument("prompt", help="the prompt; inline parameters like --aspect 16:9 go inside the quotes")
    parser.add_argument("-o", "--output", default="tinybreaker.png",
                        help="output PNG; with a batch, _1, _2 … are added before the extension")
    parser.add_argument("--negative", default="", help="negative prompt (joined with an inline --no)")
    parser.add_argument("--seed", type=int, default=-1, help="base seed (default -1: random); image k uses seed + k")
    parser.add_argument("--width", type=int, help="image width, a multiple of 8 (default: from the inline --aspect)")
    parser.add_argument("--height", type=int, help="image height, a multiple of 8 (default: from the inline --aspect)")
    parser.add_argument("--batch", type=int, default=1, help="number of images (seeds seed, seed+1, …)")
    fields = parser.add_argument_group("TinyBreaker settings (as in the WebUI's accordion; 0 or 'style' = the "
                                       "style's value)")
    for spec in params.FIELDS:
        if spec.name in _NOT_OPTIONS:
            continue
        names = ["--" + spec.name.replace("_", "-")] + _ALIASES.get(spec.name, [])
        if spec.kind is bool:
            fields.add_argument(*names, dest=spec.name, action=argparse.BooleanOptionalAction, default=None,
                                help=spec.help or spec.label)
        else:
            fields.add_argument(*names, dest=spec.name, default=None, metavar=_metavar(spec),
                                help=f"{spec.help or spec.label} ({spec.describe_allowed()}; default "
                                     f"{spec.default!r})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                        help="PixArt/refiner dtype (auto: bf16 or fp16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--decoder", default="high_quality", choices=("high_quality", "fast"),
                        help="full SD1 VAE decoder or TAESD")
    parser.add_argument("--checkpoint", help="TinyBreaker checkpoint (.safetensors)")
    parser.add_argument("--t5", help="T5-XXL encoder file (.safetensors, fp8/bf16/fp16/fp32)")
    parser.add_argument("--t5-tokenizer", help="folder with the T5 tokenizer (tokenizer.json)")
    parser.add_argument("--clip-tokenizer", help="folder with the CLIP tokenizer (vocab.json, merges.txt)")
    parser.add_argument("--models-dir", default=os.environ.get("TINYBREAKER_MODELS", "models"),
                        help="models folder searched for the files above (default ./models, or $TINYBREAKER_MODELS)")
    parser.add_argument("--download", action="store_true",
                        help="download missing files from their public hub repositories into --models-dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = run(args)
    except TinyBreakerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def cli_params(args) -> params.TinyBreakerParams:
    """The validated fields from the options given (the rest keep their defaults)."""
    given = {spec.name: getattr(args, spec.name) for spec in params.FIELDS
             if spec.name not in _NOT_OPTIONS and getattr(args, spec.name) is not None}
    return params.from_dict({**given, "enabled": True})


def cli_request(args):
    from .plan import ImageRequest

    return ImageRequest(prompt=args.prompt, negative=args.negative, width=args.width, height=args.height,
                        seed=args.seed, batch_size=args.batch)


def run(args) -> list[str]:
    import torch

    from .generation import generate_images
    from .model_files import resolve_cli_files

    fields, request = cli_params(args), cli_request(args)
    files = resolve_cli_files(args.models_dir, checkpoint=args.checkpoint, t5=args.t5,
                              t5_tokenizer=args.t5_tokenizer, clip_tokenizer=args.clip_tokenizer,
                              download=args.download)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = generate_images(files, fields, request, device=device, dtype=_dtype(args.dtype, device),
                             decoder=args.decoder, progress=True)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return result.save(args.output)


def _metavar(spec: params.FieldSpec) -> str:
    return "{" + ",".join(spec.choices) + "}" if spec.choices else spec.kind.__name__.upper()


def _dtype(name: str, device):
    import torch

    if name == "fp32" or (name == "auto" and device.type == "cpu"):
        return torch.float32
    if name == "fp16":
        return torch.float16
    if name == "bf16" or (device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16
