/**
 * TinyBreaker prompt helpers: the pure text logic behind the prompt-box keys and highlighting (no DOM).
 *
 * The inline language (docs/numerics.md "Inline prompt arguments", tinybreaker_ext/prompt/grammar.py): every `--` starts an argument whose name
 * runs to the first whitespace. These functions find the argument under the cursor, step its value (Ctrl+Up/Down),
 * complete a partly typed name (Ctrl+Right) and list the ranges to highlight. They return plain objects describing
 * an edit, so they run the same in the browser (window.TinyBreakerPrompt) and in Node (module.exports).
 */
(function (root) {
    "use strict";

    // Mirrors ARGUMENTS of tinybreaker_ext/prompt/grammar.py, in the same order (tests/test_js_grammar_table.py
    // loads both and compares them).
    const ARGUMENTS = [
        {name: "style", aliases: [], kind: "style"},
        {name: "prompt", aliases: [], kind: "ignored"},
        {name: "no", aliases: ["negative"], kind: "text"},
        {name: "refine", aliases: [], kind: "text"},
        {name: "cfg-shift", aliases: ["c"], kind: "int"},
        {name: "image-shift", aliases: ["i"], kind: "int"},
        {name: "upscale", aliases: ["u"], kind: "upscale"},
        {name: "upscale-noise", aliases: [], kind: "noise"},
        {name: "upscale-model", aliases: [], kind: "name"},
        {name: "detail-level", aliases: ["d"], kind: "detail"},
        {name: "seed", aliases: ["s"], kind: "seed"},
        {name: "aspect", aliases: ["a"], kind: "aspect"},
        {name: "landscape", aliases: [], kind: "flag"},
        {name: "portrait", aliases: [], kind: "flag"},
        {name: "small", aliases: [], kind: "flag"},
        {name: "medium", aliases: [], kind: "flag"},
        {name: "large", aliases: [], kind: "flag"},
        {name: "batch-size", aliases: ["b"], kind: "batch"},
        {name: "variant", aliases: [], kind: "int", deprecated: true},
        {name: "cfg-adjust", aliases: [], kind: "float", deprecated: true},
    ];
    const LEVEL_WORDS = ["none", "minimal", "low", "normal", "high", "veryhigh", "maximum"];
    // The reference editor's aspect list, sorted by ratio; Ctrl+Up/Down walks it in a circle.
    const ASPECT_CYCLE = ["1:1", "4:3", "3:2", "16:10", "16:9", "2:1", "21:9", "12:5", "70:27", "32:9"];
    const DEFAULT_ASPECT = "4:3";
    // Ctrl+Right candidates, first match wins: the reference editor's list, then the names it leaves out.
    const COMPLETION_NAMES = [
        "no", "refine", "seed", "cfg-shift", "image-shift", "aspect", "landscape", "portrait", "medium",
        "upscale", "upscale-noise", "batch-size", "detail-level", "style", "small", "large",
        "upscale-model",
    ];

    // Ctrl+Up/Down per argument, with the reference editor's ranges (docs/numerics.md "Inline prompt arguments").
    // `initial` is what an empty or "random" value becomes; `plus` writes positive numbers with a sign.
    const STEP_RULES = {
        "seed": {type: "int", initial: 1n, min: 1n, max: 0xFFFFFFFFFFFFFFFFn, words: ["random"]},
        "cfg-shift": {type: "int", initial: 0n, min: -20n, max: 20n, plus: true},
        "image-shift": {type: "int", initial: 0n, min: 0n},
        "upscale-noise": {type: "int", initial: 0n, min: -5n, max: 5n, plus: true, levels: LEVEL_WORDS},
        "detail-level": {type: "int", initial: 0n, min: -9n, max: 9n, plus: true, levels: LEVEL_WORDS},
        "batch-size": {type: "int", initial: 1n, min: 1n},
        "aspect": {type: "aspect"},
        "upscale": {type: "choice", choices: ["on", "off", "upscaler", "enhancer"], bare: "on",
            synonyms: {"true": "on", "yes": "on", "false": "off", "no": "off"}},
        "landscape": {type: "flag", cycle: ["landscape", "portrait"], circular: true},
        "portrait": {type: "flag", cycle: ["landscape", "portrait"], circular: true},
        "small": {type: "flag", cycle: ["medium", "large"], circular: false, synonyms: {"small": "medium"}},
        "medium": {type: "flag", cycle: ["medium", "large"], circular: false},
        "large": {type: "flag", cycle: ["medium", "large"], circular: false},
    };

    const CANONICAL = new Map();
    const KIND = new Map();
    for (const spec of ARGUMENTS) {
        KIND.set(spec.name, spec.kind);
        for (const key of [spec.name, ...spec.aliases]) CANONICAL.set(key, spec.name);
    }
    // Kinds whose value is free text: Ctrl+Up/Down there belongs to the host's emphasis editing.
    const TEXT_KINDS = new Set(["text", "ignored"]);
    const NO_VALUE_KINDS = new Set(["flag", "unknown"]);

    const isSpace = (ch) => /\s/.test(ch);
    const isLineSpace = (ch) => ch === " " || ch === "\t";

    function canonicalName(written) {
        return CANONICAL.get(String(written).toLowerCase()) || null;
    }

    /** Every argument of `text`, split as the Python parser splits it, with the ranges an editor needs. */
    function scanArguments(text) {
        const found = [];
        let at = text.indexOf("--");
        while (at >= 0) {
            const next = text.indexOf("--", at + 2);
            const chunkEnd = next < 0 ? text.length : next;
            const nameStart = at + 2;
            let nameEnd = nameStart;
            while (nameEnd < chunkEnd && !isSpace(text[nameEnd])) nameEnd++;
            const name = text.slice(nameStart, nameEnd);
            const canonical = canonicalName(name);
            const kind = canonical ? KIND.get(canonical) : (name ? "unknown" : "none");
            // Values are read on the argument's own line only, so a step never swallows the next line's words.
            let valueStart = nameEnd;
            while (valueStart < chunkEnd && isLineSpace(text[valueStart])) valueStart++;
            let valueEnd = valueStart;
            if (kind === "text" || kind === "ignored" || kind === "style" || kind === "name") {
                const lineEnd = text.indexOf("\n", valueStart);
                valueEnd = lineEnd < 0 || lineEnd > chunkEnd ? chunkEnd : lineEnd;
                while (valueEnd > valueStart && isSpace(text[valueEnd - 1])) valueEnd--;
            } else if (NO_VALUE_KINDS.has(kind)) {
                valueStart = valueEnd = nameEnd;
            } else {
                while (valueEnd < chunkEnd && !isSpace(text[valueEnd])) valueEnd++;
            }
            found.push({start: at, nameStart, nameEnd, name, canonical, kind, valueStart, valueEnd,
                value: text.slice(valueStart, valueEnd), chunkEnd});
            at = next;
        }
        return found;
    }

    /** The argument whose `--name [value]` contains the selection, or null. A cursor just before `--` counts. */
    function argumentAt(text, selectionStart, selectionEnd) {
        if (selectionEnd === undefined) selectionEnd = selectionStart;
        let hit = null;
        for (const argument of scanArguments(text)) {
            if (argument.start <= selectionStart) hit = argument; else break;
        }
        if (!hit || hit.kind === "none") return null;
        const regionEnd = NO_VALUE_KINDS.has(hit.kind) ? hit.nameEnd : Math.max(hit.valueEnd, hit.valueStart);
        return selectionStart <= regionEnd && selectionEnd <= regionEnd ? hit : null;
    }

    function formatInteger(rule, number) {
        return rule.plus && number > 0n ? "+" + number : String(number);
    }

    function clampInteger(rule, number) {
        if (rule.min !== undefined && number < rule.min) return rule.min;
        if (rule.max !== undefined && number > rule.max) return rule.max;
        return number;
    }

    function stepIndex(index, delta, length, circular) {
        const moved = index + delta;
        return circular ? ((moved % length) + length) % length : Math.min(Math.max(moved, 0), length - 1);
    }

    function stepInteger(rule, token, delta) {
        if (token === "") return formatInteger(rule, rule.initial);
        const word = token.toLowerCase();
        if (rule.levels && rule.levels.includes(word)) {
            return rule.levels[stepIndex(rule.levels.indexOf(word), delta, rule.levels.length, false)];
        }
        if (rule.words && rule.words.includes(word)) return formatInteger(rule, rule.initial);
        const digits = /^[+-]?\d+/.exec(token);
        if (!digits) return null;
        const stepped = clampInteger(rule, BigInt(digits[0]) + BigInt(delta));
        return formatInteger(rule, stepped) + token.slice(digits[0].length);
    }

    function parseRatio(token) {
        const match = /^(\d{1,9}):(\d{1,9})$/.exec(token);
        if (!match) return null;
        const width = Number(match[1]), height = Number(match[2]);
        return width > 0 && height > 0 ? [width, height] : null;
    }

    // Unlisted ratios move to the nearest listed one in the step direction; tall ratios (H > W) stay tall.
    function stepAspect(token, delta) {
        if (token === "") return DEFAULT_ASPECT;
        const ratio = parseRatio(token);
        if (!ratio) return null;
        const tall = ratio[0] < ratio[1];
        const [long, short] = tall ? [ratio[1], ratio[0]] : ratio;
        const listed = ASPECT_CYCLE.map(parseRatio);
        let index = listed.findIndex(([w, h]) => w * short === h * long);
        if (index >= 0) {
            index = stepIndex(index, delta, listed.length, true);
        } else if (delta > 0) {
            index = listed.findIndex(([w, h]) => w * short > h * long);
            if (index < 0) index = 0;
        } else {
            index = listed.length - 1;
            while (index >= 0 && listed[index][0] * short > listed[index][1] * long) index--;
            if (index < 0) index = listed.length - 1;
        }
        const [width, height] = listed[index];
        return tall ? `${height}:${width}` : `${width}:${height}`;
    }

    function stepChoice(rule, token, delta) {
        let word = token === "" ? rule.bare : token.toLowerCase();
        word = (rule.synonyms && rule.synonyms[word]) || word;
        const index = rule.choices.indexOf(word);
        return index < 0 ? null : rule.choices[stepIndex(index, delta, rule.choices.length, true)];
    }

    /** The value after one Ctrl+Up (delta +1) or Ctrl+Down (-1) step, or null when `value` is not one this
     * argument understands (the caller then inserts `initialValue` instead of overwriting the user's text). */
    function stepValue(name, value, delta) {
        const canonical = canonicalName(name);
        const rule = canonical && STEP_RULES[canonical];
        if (!rule) return null;
        const token = String(value).trim();
        if (rule.type === "int") return stepInteger(rule, token, delta);
        if (rule.type === "aspect") return stepAspect(token, delta);
        if (rule.type === "choice") return stepChoice(rule, token, delta);
        if (rule.type === "flag") {
            let word = token.toLowerCase();
            word = (rule.synonyms && rule.synonyms[word]) || word;
            const index = rule.cycle.indexOf(word);
            return index < 0 ? null : rule.cycle[stepIndex(index, delta, rule.cycle.length, rule.circular)];
        }
        return null;
    }

    function initialValue(name) {
        const rule = STEP_RULES[canonicalName(name)];
        if (!rule) return null;
        if (rule.type === "int") return formatInteger(rule, rule.initial);
        if (rule.type === "aspect") return DEFAULT_ASPECT;
        if (rule.type === "choice") return rule.bare;
        return null;
    }

    function makeEdit(text, start, end, insert, selectStart, selectEnd) {
        const newText = text.slice(0, start) + insert + text.slice(end);
        return {handled: true, changed: newText !== text, text: newText, start, end, insert,
            selectionStart: selectStart, selectionEnd: selectEnd};
    }

    /**
     * Ctrl+Up/Down at the selection. Returns null when the selection is not on a `--param` (or on one whose value
     * is free text: --no, --refine), so the host's emphasis editing should run; otherwise an edit object
     * {handled, changed, text, start, end, insert, selectionStart, selectionEnd} (`changed` false: the key is
     * still ours, for example --style, so the host does not wrap the argument in `(...:1.1)`).
     */
    function stepArgumentAt(text, selectionStart, selectionEnd, delta) {
        const argument = argumentAt(text, selectionStart, selectionEnd);
        if (!argument || TEXT_KINDS.has(argument.kind)) return null;
        const rule = argument.canonical && STEP_RULES[argument.canonical];
        const unchanged = makeEdit(text, selectionStart, selectionStart, "", selectionStart, selectionEnd);
        if (!rule) return unchanged;
        if (rule.type === "flag") {
            const name = stepValue(argument.canonical, argument.canonical, delta);
            if (name === argument.name) return {...unchanged, selectionStart: argument.nameStart,
                selectionEnd: argument.nameEnd};
            return makeEdit(text, argument.nameStart, argument.nameEnd, name,
                argument.nameStart, argument.nameStart + name.length);
        }
        const stepped = stepValue(argument.canonical, argument.value, delta);
        if (stepped !== null && argument.value !== "") {
            // Only the number of `7,` changes: keep what follows it out of the splice and the selection.
            const digits = rule.type === "int" ? /^[+-]?\d+/.exec(argument.value) : null;
            const kept = digits ? argument.value.length - digits[0].length : 0;
            const number = stepped.slice(0, stepped.length - kept);
            return makeEdit(text, argument.valueStart, argument.valueEnd - kept, number,
                argument.valueStart, argument.valueStart + number.length);
        }
        // Empty value: write one. Unreadable value (`--seed cat`): put one before it, keeping the user's words.
        const value = stepped !== null ? stepped : initialValue(argument.canonical);
        const at = argument.valueStart;
        const before = at === argument.nameEnd ? " " : "";
        const after = at < text.length && !isSpace(text[at]) ? " " : "";
        return makeEdit(text, at, at, before + value + after, at + before.length, at + before.length + value.length);
    }

    /** Ctrl+Right with the cursor at the end of a partly typed name (`--asp|`): the completed name and a space
     * (`--aspect |`), or null when nothing completes it. */
    function completeNameAt(text, cursor) {
        const argument = scanArguments(text).find((a) => a.nameEnd === cursor && a.nameEnd > a.nameStart);
        if (!argument) return null;
        const typed = argument.name.toLowerCase();
        const name = COMPLETION_NAMES.find((candidate) => candidate.startsWith(typed) && candidate !== typed);
        if (!name) return null;
        const spaced = isLineSpace(text[argument.nameEnd] || "");
        const insert = spaced ? name : name + " ";
        const caret = argument.nameStart + name.length + 1;
        return makeEdit(text, argument.nameStart, argument.nameEnd, insert, caret, caret);
    }

    /** Ranges to highlight: one per argument, `--name` plus its value where the value is not free text. */
    function highlightRanges(text) {
        const ranges = [];
        for (const argument of scanArguments(text)) {
            if (argument.kind === "none") continue;
            const markValue = !TEXT_KINDS.has(argument.kind) && argument.valueEnd > argument.valueStart;
            ranges.push({
                start: argument.start, end: markValue ? argument.valueEnd : argument.nameEnd,
                nameEnd: argument.nameEnd, valueStart: markValue ? argument.valueStart : argument.nameEnd,
                name: argument.canonical, known: argument.canonical !== null,
            });
        }
        return ranges;
    }

    function escapeHtml(text) {
        return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
    }

    /** The text as HTML for the highlight layer: same characters, arguments wrapped in <mark>/<span>. */
    function highlightHtml(text) {
        let html = "", at = 0;
        for (const range of highlightRanges(text)) {
            const state = range.known ? "known" : "unknown";
            html += escapeHtml(text.slice(at, range.start));
            html += `<mark class="tinybreaker-param tinybreaker-param-${state}" data-name="${escapeHtml(range.name || "")}">`;
            html += `<span class="tinybreaker-param-name">${escapeHtml(text.slice(range.start, range.nameEnd))}</span>`;
            if (range.end > range.valueStart) {
                html += escapeHtml(text.slice(range.nameEnd, range.valueStart));
                html += `<span class="tinybreaker-param-value">${escapeHtml(text.slice(range.valueStart, range.end))}</span>`;
            }
            html += "</mark>";
            at = range.end;
        }
        return html + escapeHtml(text.slice(at));
    }

    const api = {
        ARGUMENTS, LEVEL_WORDS, ASPECT_CYCLE, DEFAULT_ASPECT, COMPLETION_NAMES, STEP_RULES,
        canonicalName, scanArguments, argumentAt, stepValue, initialValue, stepArgumentAt, completeNameAt,
        highlightRanges, highlightHtml,
    };
    root.TinyBreakerPrompt = api;
    if (typeof module === "object" && module.exports) module.exports = api;
})(typeof window !== "undefined" ? window : globalThis);
