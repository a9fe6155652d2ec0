/* Helpers the browser test calls through Runtime.evaluate: set the prompt and read back what happened. */
window.inputEvents = [];
document.addEventListener("input", function (event) {
    window.inputEvents.push({value: event.target.value, trusted: event.isTrusted});
}, true);

window.tbTest = {
    textarea() {
        return gradioApp().querySelector("#txt2img_prompt textarea");
    },
    ready() {
        const textarea = this.textarea();
        return Boolean(textarea && textarea.nextElementSibling &&
            textarea.nextElementSibling.classList.contains("tinybreaker-highlight"));
    },
    // Sets the text the way gradio does (no event), then places the cursor or selection.
    setPrompt(text, start, end) {
        const textarea = this.textarea();
        textarea.value = text;
        textarea.focus();
        textarea.setSelectionRange(start, end === undefined ? start : end);
        window.hostEditAttentionCalls = 0;
        window.inputEvents = [];
    },
    state() {
        const textarea = this.textarea();
        return {value: textarea.value, selectionStart: textarea.selectionStart, selectionEnd: textarea.selectionEnd,
            hostCalls: window.hostEditAttentionCalls, inputEvents: window.inputEvents};
    },
    marks() {
        const layer = this.textarea().nextElementSibling;
        return Array.from(layer.querySelectorAll("mark")).map((mark) => ({
            text: mark.textContent, known: mark.classList.contains("tinybreaker-param-known"),
            name: (mark.querySelector(".tinybreaker-param-name") || {}).textContent || null,
            value: (mark.querySelector(".tinybreaker-param-value") || {}).textContent || null,
        }));
    },
    // Where things are on screen, in CSS pixels (the screenshot uses a device scale factor of 1).
    geometry() {
        const textarea = this.textarea(), layer = textarea.nextElementSibling;
        const box = textarea.getBoundingClientRect(), over = layer.getBoundingClientRect();
        const rect = (element) => {
            const r = element.getBoundingClientRect();
            return {left: r.left, top: r.top, width: r.width, height: r.height};
        };
        return {
            textareaClient: {left: box.left + textarea.clientLeft, top: box.top + textarea.clientTop,
                width: textarea.clientWidth, height: textarea.clientHeight},
            layer: {left: over.left, top: over.top, width: over.width, height: over.height},
            names: Array.from(layer.querySelectorAll(".tinybreaker-param-name")).map(rect),
            values: Array.from(layer.querySelectorAll(".tinybreaker-param-value")).map(rect),
            textareaScrollHeight: textarea.scrollHeight,
            layerContentHeight: layer.firstElementChild.getBoundingClientRect().height,
            paddingTop: parseFloat(getComputedStyle(textarea).paddingTop),
            paddingBottom: parseFloat(getComputedStyle(textarea).paddingBottom),
        };
    },
};
