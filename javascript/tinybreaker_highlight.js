/**
 * TinyBreaker prompt highlighting: a see-through layer laid exactly over the prompt <textarea> that tints the
 * `--param value` ranges. The textarea stays the real input, untouched: the layer ignores the pointer
 * (pointer-events: none), draws its text transparent and only paints the tints, so typing, selection, the caret
 * and the host's own prompt features keep working; if the layer ever drifts, only a tint is misplaced.
 * Styles: style.css (.tinybreaker-highlight). Needs window.TinyBreakerPrompt (tinybreaker_prompt.js).
 */
(function () {
    "use strict";

    // Everything that decides where the textarea's characters land; copied so the layer wraps lines identically.
    const COPIED_STYLES = [
        "fontFamily", "fontSize", "fontWeight", "fontStyle", "fontVariant", "fontStretch", "fontKerning",
        "fontFeatureSettings", "fontVariationSettings", "letterSpacing", "wordSpacing", "lineHeight", "textTransform",
        "textIndent", "textAlign", "textRendering", "tabSize", "direction", "whiteSpace", "overflowWrap", "wordBreak",
        "paddingTop", "paddingRight", "paddingBottom", "paddingLeft",
    ];

    class PromptHighlighter {
        constructor(textarea) {
            this.textarea = textarea;
            this.layer = document.createElement("div");
            this.layer.className = "tinybreaker-highlight";
            this.layer.setAttribute("aria-hidden", "true");
            this.content = document.createElement("div");
            this.content.className = "tinybreaker-highlight-content";
            this.layer.appendChild(this.content);
            textarea.insertAdjacentElement("afterend", this.layer);
            this.renderedValue = null;
            this.geometryKey = null;
            this.onInput = () => this.sync();
            this.onScroll = () => this.followScroll();
            textarea.addEventListener("input", this.onInput);
            textarea.addEventListener("scroll", this.onScroll);
            // gradio grows the textarea while typing; re-measure on any size change.
            this.resizeObserver = typeof ResizeObserver === "function" ? new ResizeObserver(() => this.sync()) : null;
            if (this.resizeObserver) this.resizeObserver.observe(textarea);
            this.sync();
        }

        /** Brings the layer up to date (value, size, position, scroll); cheap when nothing changed. */
        sync() {
            const textarea = this.textarea;
            const visible = textarea.isConnected && textarea.offsetParent !== null && textarea.clientWidth > 0;
            this.layer.style.display = visible ? "" : "none";
            if (!visible) {
                this.geometryKey = null;
                return;
            }
            if (textarea.value !== this.renderedValue) this.render(textarea.value);
            const style = getComputedStyle(textarea);
            const key = [textarea.offsetLeft, textarea.offsetTop, textarea.clientWidth, textarea.clientHeight,
                style.fontSize, style.fontFamily, style.lineHeight, style.paddingLeft, style.paddingTop].join("|");
            if (key !== this.geometryKey) {
                this.place(style);
                this.geometryKey = key;
            }
            this.followScroll();
        }

        render(value) {
            const logic = window.TinyBreakerPrompt;
            // A trailing newline needs a character after it to get its own line, as it has in the textarea.
            this.content.innerHTML = (logic ? logic.highlightHtml(value) : "") + (value.endsWith("\n") ? " " : "");
            this.renderedValue = value;
        }

        place(style) {
            const textarea = this.textarea, layer = this.layer;
            for (const name of COPIED_STYLES) layer.style[name] = style[name];
            // clientWidth/Height leave out borders and scrollbars: the text box the textarea wraps its lines in.
            layer.style.width = textarea.clientWidth + "px";
            layer.style.height = textarea.clientHeight + "px";
            // Measure against where the layer lands at 0,0, whatever its containing block is.
            layer.style.left = "0px";
            layer.style.top = "0px";
            const origin = layer.getBoundingClientRect();
            const box = textarea.getBoundingClientRect();
            layer.style.left = (box.left + textarea.clientLeft - origin.left) + "px";
            layer.style.top = (box.top + textarea.clientTop - origin.top) + "px";
        }

        followScroll() {
            const {scrollLeft, scrollTop} = this.textarea;
            this.content.style.transform = `translate(${-scrollLeft}px, ${-scrollTop}px)`;
        }

        destroy() {
            this.textarea.removeEventListener("input", this.onInput);
            this.textarea.removeEventListener("scroll", this.onScroll);
            if (this.resizeObserver) this.resizeObserver.disconnect();
            this.layer.remove();
        }
    }

    window.TinyBreakerHighlighter = PromptHighlighter;
})();
