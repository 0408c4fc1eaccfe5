// remo ui: ANSI colours (SGR) in a job's output become spans; every other escape
// sequence is dropped. Text is only ever set as text, never parsed as HTML.
"use strict";

const ansi = (() => {
  // eslint-disable-next-line no-control-regex
  const ESCAPES = /\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

  function fresh() { return { fg: null, bg: null, bold: false, dim: false, italic: false, under: false }; }

  function color256(n) {
    if (n < 16) return { cls: n };
    if (n < 232) {
      const v = [0, 95, 135, 175, 215, 255];
      n -= 16;
      return { rgb: `rgb(${v[Math.floor(n / 36)]},${v[Math.floor(n / 6) % 6]},${v[n % 6]})` };
    }
    const g = 8 + (n - 232) * 10;
    return { rgb: `rgb(${g},${g},${g})` };
  }

  function apply(state, params) {
    const codes = params === "" ? [0] : params.split(/[;:]/).map((x) => parseInt(x || "0", 10));
    for (let i = 0; i < codes.length; i += 1) {
      const c = codes[i];
      if (c === 0) Object.assign(state, fresh());
      else if (c === 1) state.bold = true;
      else if (c === 2) state.dim = true;
      else if (c === 3) state.italic = true;
      else if (c === 4) state.under = true;
      else if (c === 22) { state.bold = false; state.dim = false; }
      else if (c === 23) state.italic = false;
      else if (c === 24) state.under = false;
      else if (c >= 30 && c <= 37) state.fg = { cls: c - 30 };
      else if (c >= 90 && c <= 97) state.fg = { cls: c - 90 + 8 };
      else if (c === 39) state.fg = null;
      else if (c >= 40 && c <= 47) state.bg = { cls: c - 40 };
      else if (c >= 100 && c <= 107) state.bg = { cls: c - 100 + 8 };
      else if (c === 49) state.bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        const col = color256(codes[i + 2] || 0);
        if (c === 38) state.fg = col; else state.bg = col;
        i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        const col = { rgb: `rgb(${codes[i + 2] || 0},${codes[i + 3] || 0},${codes[i + 4] || 0})` };
        if (c === 38) state.fg = col; else state.bg = col;
        i += 4;
      }
    }
  }

  function plain(state) {
    return !state.fg && !state.bg && !state.bold && !state.dim && !state.italic && !state.under;
  }

  function span(state, text) {
    if (plain(state)) return document.createTextNode(text);
    const node = document.createElement("span");
    const cls = [];
    if (state.fg && state.fg.cls !== undefined) cls.push(`f${state.fg.cls}`);
    if (state.bg && state.bg.cls !== undefined) cls.push(`b${state.bg.cls}`);
    if (state.bold) cls.push("bo");
    if (state.dim) cls.push("di");
    if (state.italic) cls.push("it");
    if (state.under) cls.push("un");
    node.className = cls.join(" ");
    if (state.fg && state.fg.rgb) node.style.color = state.fg.rgb;  // CSSOM: allowed by the CSP
    if (state.bg && state.bg.rgb) node.style.backgroundColor = state.bg.rgb;
    node.textContent = text;
    return node;
  }

  // Append `text` (no newline in it) to `parent`, coloured; `state` carries over.
  function render(parent, text, state) {
    let last = 0;
    ESCAPES.lastIndex = 0;
    let m;
    while ((m = ESCAPES.exec(text)) !== null) {
      if (m.index > last) parent.append(span(state, text.slice(last, m.index)));
      if (m[2] === "m") apply(state, m[1] || "");
      last = ESCAPES.lastIndex;
    }
    if (last < text.length) parent.append(span(state, text.slice(last)));
  }

  return { fresh, render };
})();
