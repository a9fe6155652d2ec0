// Runs calls to javascript/tinybreaker_prompt.js for the pytest suite: reads [{fn, args}] as JSON on stdin and
// writes [{ok, value} | {ok: false, error}] as JSON on stdout. `fn: "constants"` returns the exported tables;
// `fn: "walkSteps"` presses Ctrl+Up/Down `steps` times with the caret at the end and returns each text.
"use strict";
const path = require("path");
const logic = require(path.join(__dirname, "..", "..", "javascript", "tinybreaker_prompt.js"));

function constants() {
    return {
        ARGUMENTS: logic.ARGUMENTS, LEVEL_WORDS: logic.LEVEL_WORDS, ASPECT_CYCLE: logic.ASPECT_CYCLE,
        DEFAULT_ASPECT: logic.DEFAULT_ASPECT, COMPLETION_NAMES: logic.COMPLETION_NAMES,
        exported: Object.keys(logic).sort(),
    };
}

function walkSteps(text, delta, steps) {
    const texts = [];
    for (let i = 0; i < steps; i++) {
        const edit = logic.stepArgumentAt(text, text.length, text.length, delta);
        if (!edit) throw new Error(`no step at the end of ${JSON.stringify(text)}`);
        text = edit.text;
        texts.push(text);
    }
    return texts;
}

const helpers = {constants, walkSteps};

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
    const results = JSON.parse(input).map(({fn, args}) => {
        try {
            const value = (helpers[fn] || logic[fn])(...(args || []));
            return {ok: true, value: value === undefined ? null : value};
        } catch (error) {
            return {ok: false, error: String(error && error.stack || error)};
        }
    });
    process.stdout.write(JSON.stringify(results));
});
