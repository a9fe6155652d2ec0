/* Stand-in for the WebUI host's page helpers, written for TinyBreaker's browser test (not a copy of the host's
 * code): script.js's gradioApp / onUiLoaded (run once #txt2img_prompt appears), ui.js's updateInput, and a tiny
 * version of edit-attention.js's Ctrl+Up/Down emphasis editing that, like the host's, listens for keydown on the
 * window in the bubble phase and ignores whether someone else already handled the key. */
function gradioApp() {
    const elems = document.getElementsByTagName("gradio-app");
    const elem = elems.length === 0 ? document : elems[0];
    return elem.shadowRoot ? elem.shadowRoot : elem;
}

var uiLoadedCallbacks = [];
function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
}

function updateInput(target) {
    const event = new Event("input", {bubbles: true});
    Object.defineProperty(event, "target", {value: target});
    target.dispatchEvent(event);
}

document.addEventListener("DOMContentLoaded", function () {
    let loaded = false;
    new MutationObserver(function () {
        if (!loaded && gradioApp().querySelector("#txt2img_prompt")) {
            loaded = true;
            for (const callback of uiLoadedCallbacks) callback();
        }
    }).observe(gradioApp(), {childList: true, subtree: true});
});

// Emphasis stand-in: wraps the selection (or the word at the cursor) in `(text:1.1)`.
window.hostEditAttentionCalls = 0;
addEventListener("keydown", function (event) {
    const target = event.composedPath()[0];
    if (!target.matches || !target.matches("*:is([id*='_toprow'] [id*='_prompt'], .prompt) textarea")) return;
    if (!(event.metaKey || event.ctrlKey)) return;
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    window.hostEditAttentionCalls += 1;
    const text = target.value;
    let start = target.selectionStart, end = target.selectionEnd;
    if (start === end) {
        while (start > 0 && !/[\s,]/.test(text[start - 1])) start--;
        while (end < text.length && !/[\s,]/.test(text[end])) end++;
    }
    if (start === end) return;
    event.preventDefault();
    target.value = text.slice(0, start) + "(" + text.slice(start, end) + ":1.1)" + text.slice(end);
    target.setSelectionRange(start + 1, end + 1);
    updateInput(target);
});
