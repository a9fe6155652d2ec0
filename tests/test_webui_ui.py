"""The accordion built with a real gradio (3.41 on A1111/reForge, 4.40 on Forge): controls in FIELDS order with
the parameter defaults as values (they are the API's defaults), refresh buttons, paste fields."""

import pytest

gr = pytest.importorskip("gradio", reason="gradio is not installed here; run this file in a host venv (3.41.2/4.40.0)")

from builders.fixtures_webui import CHECKPOINT_NAME, T5_NAME  # noqa: E402
from builders.params import script_args  # noqa: E402
from tinybreaker_ext import params  # noqa: E402
from tinybreaker_ext.webui import ui  # noqa: E402
from tinybreaker_ext.webui.api import control_choices  # noqa: E402


def elem_id(name):
    return f"script_tinybreaker_{name}"


def choice_values(component):
    """Dropdown choices: plain strings in gradio 3, (label, value) pairs in gradio 4."""
    return [choice[1] if isinstance(choice, (tuple, list)) else choice for choice in component.choices]


def build(size_targets=None):
    with gr.Blocks():
        return ui.build_ui(elem_id, control_choices, size_targets)


def test_controls_come_back_in_field_order_with_default_values(tb_host):
    controls, _paste = build()
    assert len(controls) == len(params.FIELDS)
    defaults = params.TinyBreakerParams()
    for control, spec in zip(controls, params.FIELDS):
        assert control.value == getattr(defaults, spec.name), spec.name
        assert type(control.value) is type(spec.default) or spec.kind is float, spec.name
    assert controls[0].label == "TinyBreaker" and controls[0].elem_id == "script_tinybreaker_enable-checkbox"
    assert controls[0].accordion.elem_id == "script_tinybreaker_enable"
    assert [control.elem_id for control in controls[1:]] == [elem_id(spec.name) for spec in params.FIELDS[1:]]


def test_choices_come_from_the_models_folder_and_the_styles(tb_host):
    controls, _paste = build()
    by_name = dict(zip(params.FIELD_NAMES, controls))
    assert choice_values(by_name["checkpoint"]) == ["", CHECKPOINT_NAME]
    assert choice_values(by_name["t5_file"]) == ["", T5_NAME]
    assert "PHOTO" in choice_values(by_name["style"])
    assert choice_values(by_name["base_sampler"]) == list(params.BASE_SAMPLERS)
    assert choice_values(by_name["upscale_model"]) == ["none", "Lanczos", "R-ESRGAN 4x+"]  # the host's, not "None"
    assert list(by_name["upscale_mode"].choices) in (["upscaler", "enhancer"],
                                                     [("upscaler", "upscaler"), ("enhancer", "enhancer")])


def test_building_twice_gives_the_same_defaults(tb_host):
    first, _ = build()
    second, _ = build()
    assert [control.value for control in first] == [control.value for control in second]


def test_paste_fields_read_the_infotext_keys(tb_host):
    controls, paste = build()
    assert paste[0][0] is controls[0]
    infotext = {"TinyBreaker": "on", "TinyBreaker base steps": "14", "TinyBreaker style": "COMIC"}
    pasted = {component: key(infotext) if callable(key) else key for component, key in paste}
    by_name = dict(zip(params.FIELD_NAMES, controls))
    assert pasted[by_name["enabled"]] is True
    assert pasted[by_name["base_steps"]] == 14 and pasted[by_name["style"]] == "COMIC"
    assert pasted[by_name["refine_steps"]] == 0  # not in the text: back to its default
    assert paste[0][1]({"Steps": "20"}) is False


def test_size_preset_button_is_wired_when_width_and_height_exist(tb_host):
    with gr.Blocks():
        width, height = gr.Slider(value=512), gr.Slider(value=512)
        controls, _paste = ui.build_ui(elem_id, control_choices, (width, height))
    assert len(controls) == len(params.FIELDS)


def test_size_presets_follow_the_hosts_size_step(tb_host):
    """Forge Neo's width/height sliders move by 64: a preset lands on that grid, and so do inline --aspect sizes."""
    from tinybreaker_ext.webui import locations

    with gr.Blocks():
        width, height = gr.Slider(value=1024, step=64), gr.Slider(value=1024, step=64)
        ui.build_ui(elem_id, control_choices, (width, height))
    try:
        assert locations.size_step() == 64
        p = tb_host.make_p(prompt="a cat --aspect 16:9", width=1024, height=1024)
        comments = []
        p.comment = comments.append
        tb_host.run(p, script_args(params.TinyBreakerParams(enabled=True, base_steps=3)))
        assert (p.width, p.height) == (1664, 960)  # 1664x944 on a 64-pixel grid
        assert any("snapped to 1664x960" in text for text in comments)
    finally:
        locations.remember_size_step(8)


def test_every_element_style_css_styles_exists_in_the_accordion(tb_host):
    """style.css's id selectors name elements the accordion really has (A1111's one-tab ids; the two-tab variant
    script_txt2img_tinybreaker_* is the same name with the tab), so a renamed control cannot silently lose its
    styling."""
    import re
    from pathlib import Path

    css = Path(__file__).resolve().parents[1].joinpath("style.css").read_text(encoding="utf-8")
    styled = {match.replace("script_txt2img_tinybreaker_", "script_tinybreaker_")
              for match in re.findall(r"#(script_(?:txt2img_)?tinybreaker_[\w-]+)", css)}
    with gr.Blocks() as blocks:
        ui.build_ui(elem_id, control_choices)
    built = {block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)}
    assert styled and styled <= built, styled - built


def _events_into(blocks, component) -> list[tuple[set, object]]:
    """(the components whose events trigger it, the function) for every event whose outputs include ``component``
    (gradio 3.41 and 4.40 keep the triggers in ``blocks.dependencies``, later ones on the function)."""
    functions = list(blocks.fns.values()) if isinstance(blocks.fns, dict) else list(blocks.fns)
    found = []
    for index, function in enumerate(functions):
        if component not in function.outputs:
            continue
        targets = getattr(function, "targets", None) or blocks.dependencies[index]["targets"]
        ids = {target[0] if isinstance(target, (tuple, list)) else target for target in targets}
        found.append(({blocks.blocks[block_id] for block_id in ids}, function))
    return found


def test_the_memory_hint_next_to_t5_placement_follows_the_files_and_the_placement(tb_host, monkeypatch):
    """Empty when built (building reads no file); each change of the checkpoint, the T5 file, the placement or the
    switch recomputes the preflight's line from the headers."""
    import tinybreaker_ext.memory_plan as memory_plan
    from tinybreaker_ext.webui import run_plan

    with gr.Blocks() as blocks:
        controls, _paste = ui.build_ui(elem_id, control_choices)
    by_name = dict(zip(params.FIELD_NAMES, controls))
    (hint,) = [block for block in blocks.blocks.values() if getattr(block, "elem_id", None) == elem_id("memory_hint")]
    assert hint.value == ""
    events = _events_into(blocks, hint)
    assert set().union(*(triggers for triggers, _ in events)) == {
        by_name["checkpoint"], by_name["t5_file"], by_name["t5_mode"], by_name["enabled"]}
    for _, function in events:
        assert list(function.inputs) == [by_name["checkpoint"], by_name["t5_file"], by_name["t5_mode"]]

    compute = events[0][1].fn
    text = compute(CHECKPOINT_NAME, T5_NAME, "auto")
    assert text == f"<span class='tinybreaker-memory-hint'>{run_plan.hint(CHECKPOINT_NAME, T5_NAME, 'auto')}</span>"
    assert "memory: T5 cpu (" in text and "needs RAM" in text  # a CPU host: auto is cpu
    assert compute("", "", "cpu") == text  # the first files found are these; on a CPU auto is cpu
    assert "no t5 file named" in compute("", "missing.safetensors", "auto")  # a bad name: why there is no estimate

    reads = []
    original = memory_plan.header_of
    monkeypatch.setattr(memory_plan, "header_of", lambda path: reads.append(path) or original(path))
    for mode in ("auto", "cpu", "stream", "gpu"):
        compute(CHECKPOINT_NAME, T5_NAME, mode)
    assert reads == []  # headers are read once per file version, not on every change
