"""The command line as a user meets it: the README's example, one line and a documented exit code for every bad
input (before anything is computed), status lines, infotext in PNG/JPEG/WebP, --download, Ctrl+C."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from builders.tinybreaker_files import tinybreaker_metadata, tinybreaker_state_dict, write_tiny_model_folder
from builders.common import save_safetensors
from builders.infotext import parse_infotext
from tinybreaker_ext import __version__, cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
LONG_PROMPT = ("a lighthouse on a cliff at dusk, waves, gulls, warm light, " * 400)[:20_000]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder outside the repository with ``models/`` as the README shows it: the checkpoint and both tokenizers
    in ``models/TinyBreaker``, the T5 encoder in ComfyUI's ``models/text_encoders``."""
    root = tmp_path_factory.mktemp("user_folder")
    paths = write_tiny_model_folder(root / "models" / "TinyBreaker", prototypes=(1,))
    os.makedirs(root / "models" / "text_encoders")
    shutil.move(paths["t5"], root / "models" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors")
    return root


def environment(**extra) -> dict:
    """The command's environment: the repository importable (the package is not installed in the test venv), no
    terminal, an empty Hugging Face cache."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
           "HF_HUB_CACHE": os.environ["HF_HUB_CACHE"], **extra}
    env.pop("TINYBREAKER_MODELS", None)
    return env


def run_cli(args, cwd, timeout=900, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinybreaker_ext", *args], cwd=cwd, env=environment(**extra_env),
                          capture_output=True, text=True, timeout=timeout)


def infotext_of(path) -> str:
    """What A1111's PNG Info reads (modules/images.py, read_info_from_image): the PNG text chunk, or the EXIF
    UserComment through piexif."""
    image = Image.open(path)
    if "parameters" in image.info:
        return image.info["parameters"]
    piexif = pytest.importorskip("piexif")
    import piexif.helper

    comment = piexif.load(image.info["exif"])["Exif"][piexif.ExifIFD.UserComment]
    return piexif.helper.UserComment.load(comment)


# -- the README's example --------------------------------------------------------------------------------------------
def readme_command_lines() -> list[str]:
    """The ``tinybreaker …`` command of the README's "Command line" section, continuation lines joined."""
    section = open(README, encoding="utf-8").read().split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split("#", 1)[0].strip() for line in joined.splitlines() if line.startswith("tinybreaker ")]


def test_the_readmes_example_runs_verbatim_from_a_folder_with_the_documented_layout(workdir, tmp_path):
    """The entry point of pyproject.toml as the ``tinybreaker`` command on PATH, the README's line run by a shell in
    a folder that is not the repository, the files found without a path option."""
    pytest.importorskip("diffusers")  # the embedded refiner
    commands = readme_command_lines()
    assert len(commands) == 1, commands
    target = re.search(r'^tinybreaker\s*=\s*"([\w.]+):(\w+)"', open(os.path.join(REPO, "pyproject.toml")).read(),
                       re.MULTILINE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tinybreaker").write_text(f"#!{sys.executable}\nimport sys\nfrom {target.group(1)} import "
                                         f"{target.group(2)}\nsys.exit({target.group(2)}())\n")
    (bin_dir / "tinybreaker").chmod(0o755)
    env = environment(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    completed = subprocess.run(["bash", "-c", commands[0]], cwd=workdir, env=env, capture_output=True, text=True,
                               timeout=1800)
    assert completed.returncode == 0, completed.stderr
    output = shlex.split(commands[0])[shlex.split(commands[0]).index("-o") + 1]
    assert completed.stdout.splitlines() == [output]
    fields = parse_infotext(infotext_of(workdir / output))
    assert fields["Seed"] == "7" and fields["Model"] == "tinybreaker_prototype1" and fields["TinyBreaker"] == "on"
    assert Image.open(workdir / output).size == tuple(int(n) for n in fields["Size"].split("x"))
    for phase in ("load:", "encode:", "base:", "transcode:", "refine:", "decode:", "save:", "done in"):
        assert phase in completed.stderr
    assert "\r" not in completed.stderr  # a pipe gets plain lines
    assert "warning" not in completed.stderr


# -- bad inputs: one line, the documented code, nothing run ------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(workdir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    checkpoint = workdir / "models" / "TinyBreaker" / "tinybreaker_prototype1.safetensors"
    data = checkpoint.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[:len(data) // 2])
    (folder / "model.ckpt").write_bytes(b"\x80\x02}q\x00." + b"\0" * 64)
    (folder / "4x-UltraSharp.pth").write_bytes(b"\x80\x02}q\x00." + b"\0" * 64)
    (folder / "empty").mkdir()
    (folder / "folder.png").mkdir()
    (folder / "a_file").write_text("not a folder")
    prototype0 = save_safetensors(tinybreaker_state_dict(0), folder / "tinybreaker_prototype0.safetensors",
                                  tinybreaker_metadata(0))
    models_without_tokenizers = folder / "models_no_tokenizers"
    models_without_tokenizers.mkdir()
    for path in (checkpoint, workdir / "models" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors"):
        os.symlink(path, models_without_tokenizers / path.name)
    return {"folder": folder, "checkpoint": str(checkpoint), "prototype0": prototype0,
            "t5": str(workdir / "models" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors"),
            "no_tokenizers": str(models_without_tokenizers)}


GOOD = ["a lighthouse", "--width", "1024", "--height", "1024", "--device", "cpu"]
USAGE, FILES, OUTPUT = cli.EXIT_USAGE, cli.EXIT_FILES, cli.EXIT_OUTPUT
BAD_INPUTS = [  # (id, argv, exit code, fragment of the message); {folder} etc. are filled from bad_files
    ("no prompt", [], USAGE, "prompt"),
    ("unknown option", GOOD + ["--frobnicate"], USAGE, "--frobnicate"),
    ("seed too large", GOOD + ["--seed", "99999999999999999999999"], USAGE, "--seed"),
    ("seed + batch past 2^64-1", GOOD + ["--seed", str(2 ** 64 - 1), "--batch", "2"], USAGE, "largest seed"),
    ("seed not a number", GOOD + ["--seed", "abc"], USAGE, "--seed"),
    ("cfg nan", GOOD + ["--cfg", "nan"], USAGE, "--base-cfg"),
    ("cfg inf", GOOD + ["--cfg", "inf"], USAGE, "--base-cfg"),
    ("refine strength -inf", GOOD + ["--refine-strength=-inf"], USAGE, "--refine-strength"),
    ("upscale-by nan", GOOD + ["--upscale-by", "nan"], USAGE, "--upscale-by"),
    ("upscale-by out of range", GOOD + ["--upscale-by", "10"], USAGE, "--upscale-by"),
    ("batch 0", GOOD + ["--batch", "0"], USAGE, "--batch"),
    ("batch 17", GOOD + ["--batch", "17"], USAGE, "--batch"),
    ("8192 square", GOOD + ["--width", "8192", "--height", "8192"], USAGE, "--max-area"),
    ("upscaled too large", GOOD + ["--width", "2048", "--height", "2048", "--upscale", "--upscale-by", "6"], USAGE,
     "--max-upscaled-area"),
    ("width not a multiple of 8", GOOD + ["--width", "1020"], USAGE, "--width"),
    ("width without height", ["a cat", "--width", "512"], USAGE, "--height"),
    ("unknown style", GOOD + ["--style", "NOPE"], USAGE, "--style"),
    ("steps out of range", GOOD + ["--steps", "1000"], USAGE, "--base-steps"),
    ("detail level out of range", GOOD + ["--detail-level", "11"], USAGE, "--detail-level"),
    ("unknown sampler", GOOD + ["--base-sampler", "bogus"], USAGE, "--base-sampler"),
    ("max-area nan", GOOD + ["--max-area", "nan"], USAGE, "--max-area"),
    ("max-area zero", GOOD + ["--max-area", "0"], USAGE, "--max-area"),
    ("dtype", GOOD + ["--dtype", "fp64"], USAGE, "--dtype"),
    ("device not a device", GOOD + ["--device", "nonsense"], USAGE, "--device"),
    ("no CUDA", GOOD + ["--device", "cuda"], USAGE, "CUDA"),
    ("unknown extension", GOOD + ["-o", "out.gif"], USAGE, ".png"),
    ("no extension", GOOD + ["-o", "out"], USAGE, "-o"),
    ("empty output", GOOD + ["-o", ""], USAGE, "-o"),
    ("output is a folder", GOOD + ["-o", "{folder}/folder.png"], OUTPUT, "is a folder"),
    ("output under a file", GOOD + ["-o", "{folder}/a_file/out.png"], OUTPUT, "is not a folder"),
    ("checkpoint missing", GOOD + ["--checkpoint", "{folder}/missing.safetensors"], FILES, "file not found"),
    ("checkpoint is the T5", GOOD + ["--checkpoint", "{t5}"], FILES, "T5"),
    ("checkpoint truncated", GOOD + ["--checkpoint", "{folder}/truncated.safetensors"], FILES, "truncated"),
    ("checkpoint is a pickle", GOOD + ["--checkpoint", "{folder}/model.ckpt"], FILES, "pickle"),
    ("t5 is the checkpoint", GOOD + ["--t5", "{checkpoint}"], FILES, "T5"),
    ("t5 is a folder", GOOD + ["--t5", "{folder}/empty"], FILES, "directory"),
    ("empty T5 tokenizer folder", GOOD + ["--t5-tokenizer", "{folder}/empty"], FILES, "T5 tokenizer"),
    ("empty CLIP tokenizer folder", GOOD + ["--clip-tokenizer", "{folder}/empty"], FILES, "CLIP tokenizer"),
    ("empty models folder", GOOD + ["--models-dir", "{folder}/empty"], FILES, "--download"),
    ("no tokenizers", GOOD + ["--models-dir", "{no_tokenizers}"], FILES, "--t5-tokenizer DIR, or add --download"),
    ("upscale with prototype0", GOOD + ["--upscale", "--checkpoint", "{prototype0}"], FILES, "Tiny Upscaler"),
    ("WebUI-only field", GOOD + ["--refine-sampler", "webui"], USAGE, "--refine-sampler"),
    ("unknown upscale mode", GOOD + ["--upscale-mode", "noisy"], USAGE, "--upscale-mode"),
    ("upscale model is a pickle", GOOD + ["--upscale", "--upscale-model", "{folder}/4x-UltraSharp.pth"], USAGE,
     "--upscale-model: '4x-UltraSharp.pth' is not a .safetensors file"),
    ("upscale model missing", GOOD + ["--upscale", "--upscale-mode", "enhancer", "--upscale-model", "nope.safetensors"], FILES,
     "the upscale model 'nope.safetensors' not found"),
]


@pytest.mark.parametrize("argv, code, fragment", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_is_one_line_and_its_exit_code_before_anything_runs(workdir, bad_files, monkeypatch, capsys,
                                                                         argv, code, fragment):
    import torch

    import tinybreaker_ext.generation as generation
    from tinybreaker_ext.files.safetensors_file import SafetensorsFile

    def must_not_run(*args, **kwargs):
        raise AssertionError("a model ran (or its weights were read) before the error")

    monkeypatch.setattr(generation, "run_plan", must_not_run)
    monkeypatch.setattr(SafetensorsFile, "_read", must_not_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(workdir)
    argv = [arg.format(**bad_files) for arg in argv]
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinybreaker: error: "), captured.err
    assert fragment in lines[0] and "Traceback" not in captured.err and captured.out == ""
    assert not (workdir / "tinybreaker.png").exists()


def test_an_upscale_model_without_spandrel_is_refused_naming_the_option(workdir, bad_files, monkeypatch, capsys):
    import tinybreaker_ext.generation as generation
    from builders.upscale_models import write_esrgan

    monkeypatch.setattr(generation, "run_plan", lambda *args, **kwargs: pytest.fail("a model ran"))
    monkeypatch.setitem(sys.modules, "spandrel", None)  # not installed
    monkeypatch.chdir(workdir)
    model = write_esrgan(str(bad_files["folder"]))
    assert cli.main(GOOD + ["--upscale", "--upscale-model", model]) == USAGE
    line = capsys.readouterr().err.strip()
    assert line.startswith("tinybreaker: error: --upscale-model: needs the spandrel package") and "\n" not in line


def test_too_little_memory_is_refused_before_any_weight_is_read_with_what_would_fit(workdir, monkeypatch, capsys):
    import tinybreaker_ext.generation as generation
    import tinybreaker_ext.memory_plan as memory_plan
    from tinybreaker_ext.files.safetensors_file import SafetensorsFile

    def must_not_run(*args, **kwargs):
        raise AssertionError("a model ran (or its weights were read) before the error")

    monkeypatch.setattr(generation, "run_plan", must_not_run)
    monkeypatch.setattr(SafetensorsFile, "_read", must_not_run)
    monkeypatch.setattr(memory_plan, "available_ram_bytes", lambda: 1_000)
    monkeypatch.chdir(workdir)
    assert cli.main(["a cat", "-q", "--device", "cpu"]) == cli.EXIT_MEMORY
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinybreaker: error: not enough memory"), lines
    assert "RAM" in lines[0]


def test_the_table_has_every_kind_of_bad_input():
    assert len(BAD_INPUTS) >= 25
    assert {code for _, _, code, _ in BAD_INPUTS} == {USAGE, FILES, OUTPUT}


def test_help_lists_every_exit_code_and_works_without_models():
    completed = run_cli(["--help"], cwd=REPO, timeout=120)
    assert completed.returncode == 0
    for code, meaning in cli.EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", completed.stdout, re.MULTILINE)
    for option in ("--checkpoint", "--download", "--upscale", "--upscale-by", "--quiet", "--max-area", "--version"):
        assert option in completed.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"tinybreaker {__version__}"


# -- runs on the tiny files ------------------------------------------------------------------------------------------
def test_a_random_seed_is_printed_and_in_the_infotext_with_the_negative_prompt(workdir, tmp_path):
    pytest.importorskip("diffusers")
    output = tmp_path / "cube.png"
    completed = run_cli(["a red cube", "--negative", "blurry, dark", "--width", "64", "--height", "48",
                         "-o", str(output)], cwd=workdir)
    assert completed.returncode == 0, completed.stderr
    seed = re.search(r"seed (\d+) \(random; --seed \1 makes this image again\)", completed.stderr).group(1)
    fields = parse_infotext(infotext_of(output))
    assert fields["Seed"] == seed and fields["Negative prompt"] == "blurry, dark" and fields["Size"] == "64x48"
    summary = completed.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"done in [\d.]+ s: load [\d.]+ s \([\d.]+ [kMG]B read\), encode [\d.]+ s, base [\d.]+ s, "
                        r"transcode [\d.]+ s, refine [\d.]+ s, decode [\d.]+ s, save [\d.]+ s", summary), summary


@pytest.mark.parametrize("extension", [".jpg", ".webp"])
def test_jpeg_and_webp_carry_the_infotext_where_the_webui_reads_it(workdir, tmp_path, extension):
    pytest.importorskip("diffusers")
    pytest.importorskip("piexif")
    output = tmp_path / f"batch{extension}"
    completed = run_cli(["a red cube --seed 5 --upscale --batch-size 2", "--width", "64", "--height", "48",
                         "--upscale-by", "1.5", "-o", str(output), "--quiet"], cwd=workdir)
    assert completed.returncode == 0, completed.stderr
    assert all(line.startswith("warning: ") for line in completed.stderr.splitlines())  # --quiet: no status
    assert completed.stdout.split() == [str(tmp_path / f"batch_{n}{extension}") for n in (1, 2)]
    for number, seed in ((1, 5), (2, 6)):
        path = tmp_path / f"batch_{number}{extension}"
        fields = parse_infotext(infotext_of(path))
        assert fields["Seed"] == str(seed) and fields["Size"] == "96x72" and Image.open(path).size == (96, 72)
        assert fields["TinyBreaker upscale"] == "on" and fields["TinyBreaker upscale by"] == "1.5"
    assert sorted(os.listdir(tmp_path)) == [f"batch_1{extension}", f"batch_2{extension}"]  # no temporary files


def test_a_20000_character_prompt_is_cut_with_a_warning_before_any_compute(workdir, tmp_path):
    pytest.importorskip("diffusers")
    output = tmp_path / "long.png"
    started = time.monotonic()
    completed = run_cli([LONG_PROMPT + " --seed 3", "--width", "64", "--height", "64", "-o", str(output)],
                        cwd=workdir)
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.splitlines()
    t5, = [line for line in lines if "T5 tokens" in line]
    assert t5.startswith("warning: the prompt (with the style's template) is ") and "first 512 are used" in t5
    assert any("CLIP tokens" in line for line in lines)
    assert lines.index(t5) < next(index for index, line in enumerate(lines) if line.startswith("load:"))
    encode = float(re.search(r"encode ([\d.]+) s", lines[-1]).group(1))
    assert encode < 10, f"encoding a cut prompt took {encode} s (the whole run {elapsed:.0f} s)"
    assert parse_infotext(infotext_of(output))["Prompt"].startswith(LONG_PROMPT[:100])


def test_an_8192_square_request_ends_at_once_with_the_limit(workdir):
    started = time.monotonic()
    completed = run_cli(["a cat", "--width", "8192", "--height", "8192"], cwd=workdir, timeout=120)
    assert time.monotonic() - started < 10
    assert completed.returncode == cli.EXIT_USAGE and completed.stdout == ""
    assert completed.stderr == ("tinybreaker: error: --width/--height: 8192x8192 is 67.1 megapixels; the base, refine "
                                "and decode stages take at most 4.2 (2048x2048): use a smaller size, and the Tiny "
                                "Upscaler for a bigger picture (--max-area MEGAPIXELS changes the limit)\n")


def test_inline_argument_warnings_come_first(workdir, capsys, monkeypatch):
    import tinybreaker_ext.generation as generation

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generation, "run_plan", stop)
    monkeypatch.chdir(workdir)
    assert cli.main(["a cat --style NOPE --aspect 0:5", "--device", "cpu"]) == cli.EXIT_INTERRUPTED
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("warning: --aspect: ") and lines[1].startswith("warning: --style NOPE: no such style")
    assert lines[-1] == "tinybreaker: error: interrupted; nothing was written"


@pytest.mark.parametrize("flag, expected", [([], False), (["--compile"], True)])
def test_compile_is_off_unless_asked_and_t5_auto_is_resolved_by_the_preflight(workdir, monkeypatch, flag, expected):
    import tinybreaker_ext.generation as generation

    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(generation, "run_plan", stop)
    monkeypatch.chdir(workdir)
    assert cli.main(["a cat", "-q", "--device", "cpu", *flag]) == cli.EXIT_INTERRUPTED
    assert seen["compile"] is expected and seen["t5_mode"] == "cpu"  # 'auto' on a CPU


def test_download_fetches_missing_tokenizers_from_the_hub(workdir, tmp_path, fake_hub, monkeypatch, capsys):
    pytest.importorskip("diffusers")
    models = tmp_path / "models"
    tokenizers = workdir / "models" / "TinyBreaker"
    fake_hub.add("google-t5/t5-base", "tokenizer.json", (tokenizers / "t5_tokenizer" / "tokenizer.json").read_bytes())
    for name in ("vocab.json", "merges.txt"):
        fake_hub.add("openai/clip-vit-large-patch14", name, (tokenizers / "clip_tokenizer" / name).read_bytes(),
                     lfs=False)
    (models / "TinyBreaker").mkdir(parents=True)
    for path in (tokenizers / "tinybreaker_prototype1.safetensors",
                 workdir / "models" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors"):
        os.symlink(path, models / "TinyBreaker" / path.name)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.chdir(tmp_path)
    argv = ["a red cube --seed 1", "--width", "32", "--height", "32", "--device", "cpu", "-o", "cube.png"]
    assert cli.main(argv) == cli.EXIT_FILES  # not without --download
    assert "--t5-tokenizer DIR, or add --download" in capsys.readouterr().err
    assert cli.main(argv + ["--download", "--quiet"]) == cli.EXIT_OK, capsys.readouterr().err
    assert (models / "TinyBreaker" / "t5_tokenizer" / "tokenizer.json").is_file()
    assert sorted(name for name in os.listdir(models / "TinyBreaker" / "clip_tokenizer")
                  if not name.startswith(".")) == ["merges.txt", "vocab.json"]  # .cache: the hub's bookkeeping
    assert (tmp_path / "cube.png").is_file()


def test_ctrl_c_stops_within_a_step_with_one_line_and_no_file(workdir, tmp_path):
    pytest.importorskip("diffusers")
    output = tmp_path / "big.png"
    process = subprocess.Popen([sys.executable, "-m", "tinybreaker_ext", "a cat --seed 1", "--width", "1024",
                                "--height", "1024", "--steps", "100", "-o", str(output)], cwd=workdir,
                               env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # wait until the base stage runs
        lines.append(line)
        if line.startswith("base:"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = process.communicate(timeout=300)
    stopped = time.monotonic() - started
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert err.splitlines() == ["tinybreaker: error: interrupted; nothing was written"]
    assert out == "" and os.listdir(tmp_path) == []
    assert stopped < 60, f"took {stopped:.0f} s to stop"  # one base step at 1024x1024 of the tiny PixArt
