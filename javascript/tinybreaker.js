/**
 * TinyBreaker prompt-box keys and highlighting for the txt2img prompt (A1111 1.10, Forge, reForge).
 *
 *   Ctrl+Up / Ctrl+Down   step the value of the `--param` under the cursor (--seed 7 -> 8, --aspect 16:9 -> 2:1)
 *   Ctrl+Right            complete a partly typed name after `--` (--asp -> --aspect )
 *
 * Off a `--param`, the keys are left alone, so the host's own emphasis editing (javascript/edit-attention.js) runs.
 * That handler listens for keydown on the window in the bubble phase; ours listens on the window in the capture
 * phase, so it always runs first, and it stops the event only when it made (or deliberately refused) an edit.
 * Uses only the host's global helpers (onUiLoaded, gradioApp, updateInput) and element ids, no gradio classes.
 * The text logic lives in tinybreaker_prompt.js, the highlight layer in tinybreaker_highlight.js; both are looked
 * up when needed because the host loads the files in name order.
 */
(function () {
    "use strict";

    const PROMPT_BOX_IDS = ["txt2img_prompt"];
    const PROMPT_SELECTOR = PROMPT_BOX_IDS.map((id) => `#${id} textarea`).join(", ");
    const SYNC_INTERVAL_MS = 300;

    function promptTextareaOf(event) {
        const target = event.composedPath ? event.composedPath()[0] : event.target;
        return target && target.tagName === "TEXTAREA" && target.matches(PROMPT_SELECTOR) ? target : null;
    }

    // The same event the host's updateInput(target) sends, so gradio picks up the new value.
    function notifyInput(textarea) {
        if (typeof updateInput === "function") {
            updateInput(textarea);
            return;
        }
        const event = new Event("input", {bubbles: true});
        Object.defineProperty(event, "target", {value: textarea});
        textarea.dispatchEvent(event);
    }

    function applyEdit(textarea, edit) {
        if (edit.changed) {
            textarea.focus();
            textarea.setSelectionRange(edit.start, edit.end);
            // insertText keeps the browser's undo history (Ctrl+Z) and fires a native `input` event itself.
            let inserted = false;
            try {
                inserted = document.execCommand("insertText", false, edit.insert);
            } catch (error) {
                inserted = false;
            }
            if (!inserted || textarea.value !== edit.text) {
                textarea.value = edit.text;
                notifyInput(textarea);
            }
        }
        textarea.setSelectionRange(edit.selectionStart, edit.selectionEnd);
    }

    function editFor(event, textarea, logic) {
        const {value, selectionStart, selectionEnd} = textarea;
        if (event.key === "ArrowUp" || event.key === "ArrowDown") {
            return logic.stepArgumentAt(value, selectionStart, selectionEnd, event.key === "ArrowUp" ? 1 : -1);
        }
        if (event.key === "ArrowRight" && selectionStart === selectionEnd) {
            return logic.completeNameAt(value, selectionStart);
        }
        return null;
    }

    function onKeyDown(event) {
        if (!(event.ctrlKey || event.metaKey) || event.altKey || event.shiftKey || event.isComposing) return;
        if (event.key !== "ArrowUp" && event.key !== "ArrowDown" && event.key !== "ArrowRight") return;
        const logic = window.TinyBreakerPrompt;
        const textarea = promptTextareaOf(event);
        if (!logic || !textarea) return;
        let edit = null;
        try {
            edit = editFor(event, textarea, logic);
        } catch (error) {
            console.error("TinyBreaker prompt keys:", error);
            return;
        }
        if (!edit) return;
        event.preventDefault();
        event.stopImmediatePropagation();
        applyEdit(textarea, edit);
    }

    window.addEventListener("keydown", onKeyDown, true);

    // One highlighter per prompt box; gradio may replace a textarea, so the check runs again now and then.
    const highlighters = new Map();

    function refreshHighlighters() {
        const Highlighter = window.TinyBreakerHighlighter;
        if (!Highlighter || document.hidden) return;
        const root = typeof gradioApp === "function" ? gradioApp() : document;
        for (const id of PROMPT_BOX_IDS) {
            const textarea = root.querySelector(`#${id} textarea`);
            let highlighter = highlighters.get(id);
            if (highlighter && highlighter.textarea !== textarea) {
                highlighter.destroy();
                highlighters.delete(id);
                highlighter = null;
            }
            if (!highlighter && textarea) {
                highlighters.set(id, new Highlighter(textarea));
            } else if (highlighter) {
                highlighter.sync();
            }
        }
    }

    function start() {
        try {
            refreshHighlighters();
        } catch (error) {
            console.error("TinyBreaker highlighting:", error);
        }
        setInterval(refreshHighlighters, SYNC_INTERVAL_MS);
        window.addEventListener("resize", refreshHighlighters);
    }

    if (typeof onUiLoaded === "function") {
        onUiLoaded(start);
    } else {
        document.addEventListener("DOMContentLoaded", start);
    }
})();
