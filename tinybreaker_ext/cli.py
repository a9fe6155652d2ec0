"""Command line: ``tinybreaker "a prompt --aspect 3:2" -o out.png`` (or ``python -m tinybreaker_ext``), the whole
reference pipeline without a WebUI. The options are the WebUI's TinyBreaker fields (``params.FIELDS``) plus the
txt2img ones; the prompt's inline parameters win over them, as in the WebUI. Everything that can fail is checked
before anything is computed, and every failure is one line and an exit code (EXIT_CODES)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import types

from . import __version__, params
from .errors import (Cancelled, ModelFileError, ModelNotFoundError, NotEnoughMemoryError, OutputError, ParameterError,
                     TinyBreakerError)

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_FILES, EXIT_OUTPUT, EXIT_MEMORY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_CODES = (
    (EXIT_OK, "the images were written"),
    (EXIT_BUG, "an unexpected error (a bug; --traceback shows where)"),
    (EXIT_USAGE, "a bad option or value, a size over the limits, an -o without .png/.jpg/.jpeg/.webp"),
    (EXIT_FILES, "a model or tokenizer file is missing, unreadable or the wrong kind, or its download failed"),
    (EXIT_OUTPUT, "the output cannot be written (a folder, or no permission)"),
    (EXIT_MEMORY, "out of memory (try a smaller size, --t5-mode stream or --device cpu)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl+C); nothing was written"),
)
PROGRAM = "tinybreaker"

# Fields that are not options: the switch itself, files (given as paths below), the WebUI-only refine choice.
_NOT_OPTIONS = {"enabled", "checkpoint", "t5_file", "refine_sampler"}
_ALIASES = {"base_steps": ["--steps"], "base_cfg": ["--cfg"]}  # the first command line's names, kept
_OPTION_OF = {"size": "--width/--height", "batch_size": "--batch", "output": "-o"}  # other fields: --field-name
_LIMIT_OPTION = {"image": "--max-area", "upscaled": "--max-upscaled-area"}


class _UsageError(Exception):
    """argparse's complaint, reported in one line instead of its usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from .limits import MAX_IMAGE_AREA, MAX_UPSCALED_AREA
    from .standalone import DECODERS

    parser = _Parser(
        prog=PROGRAM, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="TinyBreaker without a WebUI: PixArt-Sigma composes, the SD1 refiner in the checkpoint finishes.",
        epilog="precedence: the style, then the options, then the prompt's inline arguments.\n"
               "status lines go to stderr, the written file names to stdout.\n\nexit codes:\n"
               + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES))
    parser.add_argument("prompt", help="the prompt; inline parameters like --aspect 16:9 go inside the quotes")
    parser.add_argument("-o", "--output", default="tinybreaker.png",
                        help="output .png, .jpg, .jpeg or .webp (infotext in a PNG text chunk or EXIF UserComment, "
                             "as the WebUI writes it); with a batch, _1, _2 … are added before the extension")
    parser.add_argument("--negative", default="", help="negative prompt (joined with an inline --no)")
    parser.add_argument("--seed", type=int, default=-1,
                        help="base seed (default -1: random, printed); image k of a batch uses seed + k")
    parser.add_argument("--width", type=int, help="image width, a multiple of 8 (default: from the inline --aspect)")
    parser.add_argument("--height", type=int, help="image height, a multiple of 8 (default: from the inline --aspect)")
    parser.add_argument("--batch", type=int, default=1, help="number of images, 1 to 16 (seeds seed, seed+1, …)")
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
            metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else spec.kind.__name__.upper()
            fields.add_argument(*names, dest=spec.name, default=None, metavar=metavar,
                                help=f"{spec.help or spec.label} ({spec.describe_allowed()}; default "
                                     f"{spec.default!r})")
    files = parser.add_argument_group("files")
    files.add_argument("--checkpoint", help="TinyBreaker checkpoint (.safetensors)")
    files.add_argument("--t5", help="T5-XXL encoder file (.safetensors, fp8/bf16/fp16/fp32)")
    files.add_argument("--t5-tokenizer", help="folder with the T5 tokenizer (tokenizer.json)")
    files.add_argument("--clip-tokenizer", help="folder with the CLIP tokenizer (vocab.json, merges.txt)")
    files.add_argument("--models-dir", default=os.environ.get("TINYBREAKER_MODELS", "models"),
                       help="models folder searched for the files above (default ./models, or $TINYBREAKER_MODELS); "
                            "tokenizers are also looked for in the Hugging Face cache")
    files.add_argument("--download", action="store_true",
                       help="download missing models and tokenizers from their public hub repositories into "
                            "--models-dir (resumable, checked against the hub's size and hash)")
    run = parser.add_argument_group("running")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    run.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                     help="PixArt/refiner dtype (auto: bf16 or fp16 on a GPU, fp32 on the CPU)")
    run.add_argument("--decoder", default=DECODERS[0], choices=DECODERS,
                     help="the file's full KL VAE decoder, or TAESD (SD1 refiner files only)")
    run.add_argument("--max-area", type=_megapixels, default=MAX_IMAGE_AREA / 1e6, metavar="MEGAPIXELS",
                     help="largest image of the base, refine and decode stages (default %(default).1f: 2048x2048)")
    run.add_argument("--max-upscaled-area", type=_megapixels, default=MAX_UPSCALED_AREA / 1e6, metavar="MEGAPIXELS",
                     help="largest image after the Tiny Upscaler (default %(default).1f: 8192x8192)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile PixArt's blocks (faster steps on a GPU with Triton; compiling takes minutes)")
    run.add_argument("-q", "--quiet", action="store_true", help="no status lines; warnings and errors only")
    run.add_argument("--traceback", action="store_true", help="show the traceback of an unexpected error")
    run.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (EXIT_CODES)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        for path in run(args):
            print(path, flush=True)
        return EXIT_OK
    except _UsageError as error:
        return _fail(EXIT_USAGE, f"{error} (see --help)")
    except ParameterError as error:
        return _fail(EXIT_USAGE, _parameter_message(error))
    except (ModelFileError, ModelNotFoundError) as error:
        return _fail(EXIT_FILES, str(error))
    except OutputError as error:
        return _fail(EXIT_OUTPUT, str(error))
    except (KeyboardInterrupt, Cancelled):
        return _fail(EXIT_INTERRUPTED, "interrupted; nothing was written")
    except NotEnoughMemoryError as error:  # the preflight's estimate, before any weight is read
        return _fail(EXIT_MEMORY, str(error))
    except TinyBreakerError as error:  # one of ours that the cases above do not name
        return _fail(EXIT_BUG, str(error))
    except Exception as error:  # noqa: BLE001 — the last resort: still one line, unless --traceback
        first_line = str(error).splitlines()[0] if str(error) else ""
        text = str(error).lower()  # torch's OutOfMemoryError: "CUDA out of memory. Tried to allocate …"
        if isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text:
            return _fail(EXIT_MEMORY, f"out of memory ({first_line or 'the system refused an allocation'}); try a "
                                      "smaller size, --t5-mode stream or --device cpu")
        if args is not None and args.traceback:
            raise
        return _fail(EXIT_BUG, f"unexpected {type(error).__name__}: {first_line} (a bug: rerun with --traceback and "
                               "report it)")


def run(args) -> list[str]:
    """Checks everything, then generates and saves; returns the written paths."""
    from .console import ConsoleProgress
    from .generation import check_files_for_plan, plan_for, run_plan
    from .image_files import check_writable, output_paths, pil_images, save_image
    from .memory_plan import plan_memory
    from .model_files import resolve_cli_files
    from .placement import MovePlacement
    from .prompt.file_defaults import checkpoint_file_defaults

    console = ConsoleProgress(quiet=args.quiet)
    plan = plan_for(cli_params(args), cli_request(args))
    for warning in plan.warnings:
        console.warning(warning)
    device = _device(args.device)
    paths = output_paths(args.output, plan.batch_size)
    check_writable(paths)
    files = resolve_cli_files(args.models_dir, checkpoint=args.checkpoint, t5=args.t5,
                              t5_tokenizer=args.t5_tokenizer, clip_tokenizer=args.clip_tokenizer,
                              download=args.download, progress=console.bars, status=console.status)
    defaults = checkpoint_file_defaults(files.checkpoint)
    if defaults:  # planned again with the file's metadata defaults (docs/design.md "One plan"), same seed
        first = plan
        same_seed = types.SimpleNamespace(randint=lambda _low, _high: first.seed)  # a random seed stays
        plan = plan_for(cli_params(args), cli_request(args), rng=same_seed, file_defaults=defaults)
        for warning in plan.warnings:
            if warning not in first.warnings:
                console.warning(warning)
    if plan.params.upscale and plan.params.pre_upscaler:
        from .upscale_models import find_upscale_model

        files.upscale_model = find_upscale_model(plan.params.pre_upscaler, args.models_dir)
    check_files_for_plan(files, plan)
    for warning in _prompt_length_warnings(files, plan):
        console.warning(warning)
    console.status(_plan_line(plan))
    dtype = _dtype(args.dtype, device)
    memory = plan_memory(files.t5, files.checkpoint, device=device, model_dtype=dtype, t5_mode=plan.params.t5_mode,
                         placement_policy=MovePlacement(device).policy)  # the placement generation.run_plan uses
    console.status(f"memory: {memory.message}")
    memory.check()

    result = run_plan(files, plan, device=device, dtype=dtype, decoder=args.decoder, progress=console,
                      t5_mode=memory.t5_mode, compile=args.compile)
    with console.phase("save", ", ".join(paths)):
        for path, image, infotext in zip(paths, pil_images(result.images), result.infotexts):
            save_image(image, path, infotext)
    console.status(console.summary())
    return paths


def cli_params(args) -> params.TinyBreakerParams:
    """The validated fields from the options given (the rest keep their defaults)."""
    given = {spec.name: getattr(args, spec.name) for spec in params.FIELDS
             if spec.name not in _NOT_OPTIONS and getattr(args, spec.name) is not None}
    return params.from_dict({**given, "enabled": True})


def cli_request(args):
    from .limits import AreaLimits
    from .plan import ImageRequest

    return ImageRequest(prompt=args.prompt, negative=args.negative, width=args.width, height=args.height,
                        seed=args.seed, batch_size=args.batch,
                        area_limits=AreaLimits(image=round(args.max_area * 1e6),
                                               upscaled=round(args.max_upscaled_area * 1e6)))


def _prompt_length_warnings(files, plan) -> list[str]:
    """The T5 and CLIP texts that will be cut (limits.py), counted with the tokenizers found."""
    from .limits import prompt_token_warnings
    from .models.clip_text import count_clip_tokens
    from .models.clip_tokenizer import load_clip_tokenizer
    from .models.t5_tokenizer import T5PromptTokenizer
    from .plan import t5_prompt_warnings

    clip = load_clip_tokenizer(files.clip_tokenizer)
    texts = plan.texts()
    refine_texts = [("refine prompt", texts.refine_prompt), ("refine negative prompt", texts.refine_negative)]
    return (t5_prompt_warnings(plan, T5PromptTokenizer.from_dir(files.t5_tokenizer).count_tokens)
            + prompt_token_warnings(refine_texts, lambda text: count_clip_tokens(clip, text), "CLIP"))


def _plan_line(plan) -> str:
    seed = f"seed {plan.seed}"
    if plan.random_seed:
        seed += f" (random; --seed {plan.seed} makes this image again)"
    images = f", {plan.batch_size} images (seeds {plan.seed}…{plan.seeds[-1]})" if plan.batch_size > 1 else ""
    size = f"{plan.width}x{plan.height}"
    if plan.params.upscale:
        how = "enhanced at" if plan.params.upscale_mode == "enhancer" else "upscaled to"
        size += " {} {}x{}".format(how, *plan.upscaled_size)
    return f"{size}, style {plan.params.style}, {seed}{images}"


def _fail(code: int, message: str) -> int:
    print(f"{PROGRAM}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def _parameter_message(error: ParameterError) -> str:
    from .limits import LimitError

    option = _OPTION_OF.get(error.field, "--" + error.field.replace("_", "-"))
    message = f"{option}: {error.problem}"
    if isinstance(error, LimitError):
        message += f" ({_LIMIT_OPTION[error.limit]} MEGAPIXELS changes the limit)"
    return message


def _megapixels(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megapixels, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of megapixels, got {text!r}")
    return value


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ParameterError("device", f"{name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", f"{name!r}: this torch has no CUDA device (torch {torch.__version__})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ParameterError("device", f"{name!r}: there are {torch.cuda.device_count()} CUDA devices")
    return device


def _dtype(name: str, device):
    import torch

    if name == "fp32" or (name == "auto" and device.type == "cpu"):
        return torch.float32
    if name == "bf16" or (name == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16
