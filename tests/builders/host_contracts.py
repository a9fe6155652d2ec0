"""The host contracts: where each host defines every function, method, class and attribute that our WebUI adapters
call and our test stand-ins imitate, with its signature (parameter names, kinds, defaults as source text). Read by
parsing the host trees, never importing them (they need their own Python stacks). Writes
tests/fixtures/host_contracts.json, which tests/test_webui_fake_signatures.py checks in every run:

    python tests/builders/host_contracts.py a1111=<tree> forge=<tree> neo=<tree> classic=<tree> reforge=<tree>

Each tree is a git checkout (its commit goes into the fixture). The names come from two places: the AST scan of
tinybreaker_ext/webui/*.py and scripts/*.py below (``adapter_host_names``), and ``EXTRA_NAMES`` for what the
adapters reach through objects the host hands them (``p``, its sampler, a ModelPatcher class passed in) and what
the stand-ins imitate.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import subprocess
import sys

HOSTS = ("a1111", "forge", "neo", "classic", "reforge")
# The public trees the fixture was read from (the commit comes from each checkout).
SOURCES = {"a1111": "kklouzal/stable-diffusion-webui (AUTOMATIC1111 v1.10.1 + lint-only changes)",
           "forge": "lllyasviel/stable-diffusion-webui-forge, main",
           "neo": "nolanlane/sd-webui-forge-classic, main (a copy of Haoming02/sd-webui-forge-classic, neo branch)",
           "classic": "Haoming02/sd-webui-forge-classic, classic",
           "reforge": "Panchovix/stable-diffusion-webui-reForge, main"}
HOST_PACKAGES = ("modules", "backend", "ldm_patched", "modules_forge")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "host_contracts.json")
ADAPTER_FILES = ("tinybreaker_ext/webui/*.py", "scripts/*.py")
# Command-line options our own preload.py adds to the host's parser: not a host contract.
OWN_NAMES = frozenset({"modules.shared.cmd_opts.tinybreaker_dir"})
# Where hosts define their command-line options (read for ``modules.shared.cmd_opts.<option>``).
ARGUMENT_FILES = ("modules/cmd_args.py", "backend/args.py", "ldm_patched/modules/args_parser.py")
# Where hosts declare their settings (read for ``modules.shared.opts.<setting>``).
OPTION_FILES = ("modules/shared_options.py",)

_SCRIPT = ["title", "ui", "show", "run", "setup", "before_process", "process", "before_process_batch",
           "after_extra_networks_activate", "process_before_every_sampling", "process_batch", "postprocess_batch",
           "post_sample", "postprocess_image", "postprocess", "before_component", "after_component", "describe", "elem_id", "before_hr"]
EXTRA_NAMES = sorted({
    # the processing object p and what hangs off it
    "modules.processing.StableDiffusionProcessingTxt2Img.sample",
    "modules.processing.StableDiffusionProcessingTxt2Img.sample_hr_pass",
    "modules.processing.StableDiffusionProcessingTxt2Img.txt2img_image_conditioning",
    "modules.processing.StableDiffusionProcessingTxt2Img.get_token_merging_ratio",
    "modules.processing.StableDiffusionProcessingTxt2Img.init",
    "modules.scripts.ScriptRunner.process_before_every_sampling",
    "modules.sd_samplers_kdiffusion.KDiffusionSampler.__init__",
    "modules.sd_samplers_kdiffusion.KDiffusionSampler.sample",
    "modules.sd_samplers_kdiffusion.KDiffusionSampler.sample_img2img",
    "modules.sd_samplers_kdiffusion.KDiffusionSampler.initialize",
    "modules.sd_samplers_kdiffusion.sampling_prepare",
    "modules.sd_samplers_kdiffusion.sampling_cleanup",
    "modules.sd_samplers_cfg_denoiser.CFGDenoiser.forward",
    "modules.sd_samplers_common.InterruptedException",
    "modules.processing.DecodedSamples",
    "modules.prompt_parser.SdConditioning",
    "modules.prompt_parser.ComposableScheduledPromptConditioning",
    "modules.prompt_parser.MulticondLearnedConditioning",
    "modules.prompt_parser.reconstruct_cond_batch",
    "modules.prompt_parser.reconstruct_multicond_batch",
    "modules.sd_models.apply_token_merging",
    "modules.upscaler.Upscaler.upscale",
    "modules.upscaler.UpscalerData",
    "modules.shared_state.State.begin",
    "modules.shared_state.State.skip",
    "modules.shared_state.State.interrupt",
    "modules.shared_total_tqdm.TotalTQDM.clear",
    "modules.options.Options.add_option",
    "modules.shared.opts.show_progress_every_n_steps",
    "modules.shared.opts.live_previews_enable",
    "modules.options.OptionInfo",
    "modules.ui_components.ToolButton",
    "modules.script_callbacks.clear_callbacks",
    "modules.script_callbacks.app_started_callback",
    "modules.script_callbacks.before_ui_callback",
    "modules.script_callbacks.ui_settings_callback",
    "modules.script_callbacks.on_model_loaded",
    "modules.script_callbacks.on_ui_tabs",
    "modules.scripts.ScriptClassData",
    "modules_forge.forge_version.version",
    "backend.diffusion_engine.base.ForgeObjects",
    "backend.diffusion_engine.base.ForgeObjects.shallow_copy",
    # the memory managers the Forge-family adapters are handed (memory_management / model_management module and
    # its ModelPatcher class) and the calls they make on them
    *[f"{manager}.{name}" for manager in ("backend.memory_management", "ldm_patched.modules.model_management")
      for name in ("load_models_gpu", "free_memory", "get_free_memory", "get_torch_device", "current_loaded_models")],
    *[f"{patcher}.ModelPatcher.{name}" for patcher in ("backend.patcher.base", "ldm_patched.modules.model_patcher")
      for name in ("__init__", "partially_load", "partially_unload", "model_size")],
} | {f"modules.scripts.Script.{name}" for name in _SCRIPT})


# --- which host names our adapters use ---------------------------------------------------------------------------

def adapter_host_names(repo: str = REPO) -> set[str]:
    """Every dotted host name reached from a host import in the adapter files: ``from modules import shared`` then
    ``shared.state.nextjob()`` gives ``modules.shared.state.nextjob``; local aliases (``state = shared.state``) and
    ``getattr(module, "literal")`` are followed."""
    names: set[str] = set()
    for pattern in ADAPTER_FILES:
        for path in sorted(glob.glob(os.path.join(repo, pattern))):
            with open(path, encoding="utf-8") as file:
                names |= _names_in(ast.parse(file.read()))
    return names - OWN_NAMES


def _names_in(tree: ast.AST) -> set[str]:
    _mark_inner_chains(tree)
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in HOST_PACKAGES:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in HOST_PACKAGES:
                    bound[alias.asname or alias.name.split(".")[0]] = \
                        alias.name if alias.asname else alias.name.split(".")[0]
    for node in ast.walk(tree):  # local aliases: name = <host chain>
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            chain = _chain(node.value, bound)
            if chain:
                bound[node.targets[0].id] = chain
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            chain = _chain(node.args[0], bound)
            if chain:
                names.add(f"{chain}.{node.args[1].value}")
        chain = _chain(node, bound)
        if chain and not _is_inner(node):
            names.add(chain)
    return names


def _chain(node: ast.AST, bound: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in bound:
        return ".".join([bound[node.id], *reversed(parts)])
    return None


def _is_inner(node: ast.AST) -> bool:
    """True for the inner part of a longer chain (``shared.state`` inside ``shared.state.nextjob``)."""
    return getattr(node, "_outer_chain", False)


def _mark_inner_chains(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            node.value._outer_chain = True


# --- reading a host tree -----------------------------------------------------------------------------------------

class HostTree:
    def __init__(self, root: str):
        self.root = root
        self._parsed: dict[str, ast.Module | None] = {}

    def module_file(self, dotted: str) -> str | None:
        relative = dotted.replace(".", "/")
        for candidate in (relative + ".py", relative + "/__init__.py"):
            if os.path.isfile(os.path.join(self.root, candidate)):
                return candidate
        return None

    def parsed(self, relative: str) -> ast.Module | None:
        if relative not in self._parsed:
            try:
                with open(os.path.join(self.root, relative), encoding="utf-8") as file:
                    self._parsed[relative] = ast.parse(file.read())
            except (OSError, SyntaxError):
                self._parsed[relative] = None
        return self._parsed[relative]

    def resolve(self, dotted: str, depth: int = 0) -> dict | None:
        """The entry for ``dotted`` (see ``describe``), or None when this host has no such name."""
        if depth > 8:
            return None
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            relative = self.module_file(".".join(parts[:cut]))
            if relative:
                rest = parts[cut:]
                if not rest:
                    return {"kind": "module", "file": relative}
                if parts[:cut] == ["modules", "shared"] and rest[0] == "cmd_opts" and len(rest) > 1:
                    return self.argument(rest[1])
                return self.lookup(relative, self.parsed(relative), rest, depth)
        return None

    def lookup(self, relative: str, module: ast.Module | None, rest: list[str], depth: int) -> dict | None:
        if module is None:
            return None
        name, more = rest[0], rest[1:]
        for node in _statements(module.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return _function(relative, node.name, node, more)
            if isinstance(node, ast.ClassDef) and node.name == name:
                return self.in_class(relative, module, node, more, depth)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return self.resolve(".".join([node.module, alias.name, *more]), depth + 1)
        for node in _statements(module.body):
            target, annotation, value = _assignment(node, name)
            if target:
                # an alias (x = other.X), or, for an attribute of x, the class of a typed or created instance
                for expression in ([annotation] if more else []) + [value]:
                    followed = self.follow(module, expression, more, depth)
                    if followed:
                        return followed
                if more:  # `state = None` here, `shared.state = shared_state.State()` at start-up elsewhere
                    followed = self.assigned_elsewhere(relative, name, more, depth)
                    if followed:
                        return followed
                entry = {"kind": "variable", "file": relative, "qualname": name, "value": _source(value)}
                if annotation is not None:
                    entry["annotation"] = _source(annotation)
                return _with_rest(entry, more)
        return None

    def follow(self, module: ast.Module, expression: ast.AST | None, more: list[str], depth: int) -> dict | None:
        if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
            try:
                expression = ast.parse(expression.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(expression, ast.Call) and more:  # x = SomeClass(): an instance of that class
            expression = expression.func
        dotted = _dotted(expression)
        if not dotted:
            return None
        head, _, tail = dotted.partition(".")
        target = _imported_as(module, head)
        if target is None:
            return None
        return self.resolve(".".join(filter(None, [target, tail, *more])), depth + 1)

    def assigned_elsewhere(self, relative: str, name: str, more: list[str], depth: int) -> dict | None:
        """Follows ``<module>.<name> = SomeClass()`` written by another file of the same package."""
        module_name = os.path.splitext(os.path.basename(relative))[0]
        for other in sorted(glob.glob(os.path.join(self.root, os.path.dirname(relative), "*.py"))):
            other_relative = os.path.relpath(other, self.root)
            other_module = self.parsed(other_relative)
            for node in ast.walk(other_module) if other_module else ():
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and any(
                        isinstance(target, ast.Attribute) and target.attr == name and
                        isinstance(target.value, ast.Name) and target.value.id == module_name
                        for target in node.targets):
                    followed = self.follow(other_module, node.value, more, depth)
                    if followed:
                        return followed
        return None

    def in_class(self, relative: str, module: ast.Module, node: ast.ClassDef, more: list[str], depth: int,
                 qualname: str | None = None) -> dict | None:
        qualname = qualname or node.name
        if not more:
            init = self.in_class(relative, module, node, ["__init__"], depth, qualname)
            entry = {"kind": "class", "file": relative, "qualname": qualname,
                     "bases": [_source(base) for base in node.bases]}
            if init and init["kind"] == "method":
                entry["params"] = init["params"]
                entry["init_at"] = f"{init['file']}:{init['qualname']}"
            return entry
        name, rest = more[0], more[1:]
        for child in _statements(node.body):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name == name:
                entry = _function(relative, f"{qualname}.{name}", child, rest)
                entry["kind"] = "property" if _is_property(child) else "method"
                return entry
            if isinstance(child, ast.ClassDef) and child.name == name:
                return self.in_class(relative, module, child, rest, depth, f"{qualname}.{name}")
            target, _annotation, value = _assignment(child, name)
            if target:
                return _with_rest({"kind": "attribute", "file": relative, "qualname": f"{qualname}.{name}",
                                   "value": _source(value)}, rest)
        for base in node.bases:  # inherited
            inherited = self.follow_base(relative, module, base, more, depth)
            if inherited:
                return inherited
        for child in _statements(node.body):  # self.<name> = … in a method
            if isinstance(child, ast.FunctionDef):
                for statement in ast.walk(child):
                    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
                        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                        for target in targets:
                            if isinstance(target, ast.Attribute) and target.attr == name and \
                                    isinstance(target.value, ast.Name) and target.value.id == "self":
                                return _with_rest({"kind": "attribute", "file": relative,
                                                   "qualname": f"{qualname}.{child.name}:self.{name}",
                                                   "value": _source(statement.value)}, rest)
        if node.name == "Options" and not rest:
            return self.option(name)
        return None

    def follow_base(self, relative: str, module: ast.Module, base: ast.AST, more: list[str], depth: int):
        dotted = _dotted(base)
        if not dotted:
            return None
        if "." not in dotted:
            for node in _statements(module.body):
                if isinstance(node, ast.ClassDef) and node.name == dotted:
                    return self.in_class(relative, module, node, more, depth + 1)
        head, _, tail = dotted.partition(".")
        target = _imported_as(module, head)
        if target is None:
            return None
        return self.resolve(".".join(filter(None, [target, tail, *more])), depth + 1)

    def argument(self, name: str) -> dict | None:
        flag = "--" + name.replace("_", "-")
        for relative in ARGUMENT_FILES:
            module = self.parsed(relative) if os.path.isfile(os.path.join(self.root, relative)) else None
            for node in ast.walk(module) if module else ():
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                    strings = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
                    dest = next((kw.value.value for kw in node.keywords if kw.arg == "dest"), None)
                    if flag in strings or dest == name:
                        return {"kind": "argument", "file": relative, "qualname": flag,
                                "value": _source(next((kw.value for kw in node.keywords if kw.arg == "default"),
                                                      None))}
        return None

    def option(self, name: str) -> dict | None:
        for relative in OPTION_FILES:
            module = self.parsed(relative) if os.path.isfile(os.path.join(self.root, relative)) else None
            for node in ast.walk(module) if module else ():
                if isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values):
                        if isinstance(key, ast.Constant) and key.value == name:
                            return {"kind": "option", "file": relative, "qualname": name, "value": _source(value)}
        return None


def _statements(body: list[ast.stmt]):
    """Top-level statements, including those inside if/try/with blocks (conditional definitions)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            if isinstance(node, (ast.If, ast.Try, ast.With)) or (field == "body" and isinstance(node, ast.ExceptHandler)):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _statements(inner)


def _assignment(node: ast.AST, name: str):
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == name:
                return target, None, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
        return node.target, node.annotation, node.value
    return None, None, None


def _imported_as(module: ast.Module, name: str) -> str | None:
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name:
                    return alias.name
                if alias.asname is None and alias.name.split(".")[0] == name:
                    return name
    return None


def _dotted(node: ast.AST | None) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _source(node: ast.AST | None) -> str | None:
    return None if node is None else ast.unparse(node)


def _with_rest(entry: dict, rest: list[str]) -> dict:
    if rest:
        entry["rest"] = ".".join(rest)  # reached through a plain value (a dict's .get, a device's .type)
    return entry


def _is_property(node: ast.FunctionDef) -> bool:
    return any(_dotted(decorator) in ("property", "functools.cached_property") for decorator in node.decorator_list)


def _function(relative: str, qualname: str, node: ast.FunctionDef, rest: list[str]) -> dict:
    return _with_rest({"kind": "function", "file": relative, "qualname": qualname,
                       "params": parameters(node.args)}, rest)


def parameters(arguments: ast.arguments) -> list[list[str | None]]:
    """[name, kind, default source] per parameter; kinds: positional, *, keyword, ** (positional-only and
    positional-or-keyword are both 'positional': no host or stand-in depends on the difference)."""
    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + [ast.unparse(d) for d in arguments.defaults]
    result = [[arg.arg, "positional", default] for arg, default in zip(positional, defaults)]
    if arguments.vararg:
        result.append([arguments.vararg.arg, "*", None])
    result += [[arg.arg, "keyword", None if default is None else ast.unparse(default)]
               for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults)]
    if arguments.kwarg:
        result.append([arguments.kwarg.arg, "**", None])
    return result


# --- the fixture ---------------------------------------------------------------------------------------------------

def contract_names() -> list[str]:
    return sorted(adapter_host_names() | set(EXTRA_NAMES))


def host_contracts(host: str, root: str, names: list[str]) -> dict:
    tree = HostTree(root)
    return {"source": SOURCES[host], "commit": _git(root, "rev-parse", "HEAD"),
            "forge_version": _forge_version(tree),
            "contracts": {name: tree.resolve(name) for name in names}}


def _forge_version(tree: HostTree) -> str | None:
    entry = tree.resolve("modules_forge.forge_version.version")
    return entry["value"] if entry else None


def _git(root: str, *args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str]) -> None:
    trees = dict(arg.split("=", 1) for arg in argv)
    if sorted(trees) != sorted(HOSTS):
        sys.exit(__doc__)
    names = contract_names()
    fixture = {"about": "Signatures read from real host trees by tests/builders/host_contracts.py; regenerate when "
                        "an adapter calls a new host name.",
               "hosts": {host: host_contracts(host, trees[host], names) for host in HOSTS}}
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w", encoding="utf-8") as file:
        json.dump(fixture, file, indent=1, sort_keys=True)
        file.write("\n")
    missing = {name for name in names if all(fixture["hosts"][h]["contracts"][name] is None for h in HOSTS)}
    print(f"{len(names)} names x {len(HOSTS)} hosts -> {FIXTURE}")
    for name in sorted(missing):
        print(f"  in no host: {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
