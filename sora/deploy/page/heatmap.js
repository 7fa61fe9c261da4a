// Drawing attention: a heat map with token labels (rows: each token; columns: what it attends to), and small
// thumbnails of the same for the list of heads. Plain canvas, sized for the screen's pixel ratio.
"use strict";

const Heatmap = (() => {
  // A light-to-deep ramp (near white, lavender, indigo, deep violet): small weights stay visible, large ones stand out.
  const STOPS = [[247, 247, 252], [199, 196, 240], [120, 108, 222], [72, 46, 170], [34, 12, 94]];

  function color(v) {
    const x = Math.sqrt(Math.max(0, Math.min(1, v))) * (STOPS.length - 1);  // sqrt: diffuse heads still show
    const i = Math.min(STOPS.length - 2, Math.floor(x));
    const t = x - i;
    const a = STOPS[i], b = STOPS[i + 1];
    return `rgb(${a.map((c, k) => Math.round(c + (b[k] - c) * t)).join(",")})`;
  }

  function pretty(token) {
    const t = String(token).replace(/^(Ġ|▁)/, "·").replace(/Ċ/g, "↵");
    return t.trim() === "" ? "␣" : t;
  }

  function sized(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  // Each row scaled by its largest weight: where a diffuse head looks most, made visible.
  function stretched(pattern) {
    return pattern.map((row) => {
      const top = Math.max(...row, 1e-12);
      return row.map((v) => v / top);
    });
  }

  // The big map: returns its geometry, for the tooltip to find the cell under the pointer.
  function draw(canvas, pattern, rowTokens, colTokens, maxWidth, highlight) {
    const T = pattern.length, S = T ? pattern[0].length : 0;
    const font = "12px ui-sans-serif, system-ui, sans-serif";
    const probe = canvas.getContext("2d");
    probe.font = font;
    const widest = (tokens) => Math.min(120, Math.max(20, ...tokens.map((t) => probe.measureText(pretty(t)).width)));
    const left = widest(rowTokens) + 10;
    const top = Math.min(100, widest(colTokens) * 0.75 + 14);
    const right = Math.min(80, widest(colTokens) * 0.72);  // the last column's label leans out to the right
    const cell = Math.max(4, Math.min(42, Math.floor((maxWidth - left - right) / Math.max(S, 1))));
    const ctx = sized(canvas, left + cell * S + right, top + cell * T + 4);
    ctx.font = font;
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < S; j++) {
        ctx.fillStyle = color(pattern[i][j]);
        ctx.fillRect(left + j * cell, top + i * cell, cell, cell);
      }
    }
    const labels = cell >= 9;
    ctx.fillStyle = getComputedStyle(canvas).color;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i < T && labels; i++) {
      ctx.globalAlpha = highlight && highlight.row !== i ? 0.55 : 1;
      ctx.fillText(clip(ctx, pretty(rowTokens[i]), left - 10), left - 6, top + (i + 0.5) * cell);
    }
    ctx.textAlign = "left";
    for (let j = 0; j < S && labels; j++) {
      ctx.save();
      ctx.globalAlpha = highlight && highlight.col !== j ? 0.55 : 1;
      ctx.translate(left + (j + 0.5) * cell, top - 6);
      ctx.rotate(-Math.PI / 4);
      ctx.fillText(clip(ctx, pretty(colTokens[j]), 110), 0, 0);
      ctx.restore();
    }
    ctx.globalAlpha = 1;
    if (highlight) {
      ctx.strokeStyle = "rgba(255, 170, 0, 0.95)";
      ctx.lineWidth = 2;
      ctx.strokeRect(left + 1, top + highlight.row * cell + 1, cell * S - 2, cell - 2);
      ctx.strokeRect(left + highlight.col * cell + 1, top + 1, cell - 2, cell * T - 2);
    }
    return { left, top, cell, T, S };
  }

  function clip(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    while (text.length > 1 && ctx.measureText(text + "…").width > width) text = text.slice(0, -1);
    return text + "…";
  }

  function thumbnail(canvas, pattern, size) {
    const T = pattern.length, S = T ? pattern[0].length : 0;
    const ctx = sized(canvas, size, size);
    const w = size / Math.max(S, 1), h = size / Math.max(T, 1);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < S; j++) {
        ctx.fillStyle = color(pattern[i][j]);
        ctx.fillRect(j * w, i * h, Math.ceil(w), Math.ceil(h));
      }
    }
  }

  function cellAt(geometry, x, y) {
    const j = Math.floor((x - geometry.left) / geometry.cell);
    const i = Math.floor((y - geometry.top) / geometry.cell);
    return i >= 0 && j >= 0 && i < geometry.T && j < geometry.S ? { row: i, col: j } : null;
  }

  return { draw, thumbnail, cellAt, pretty, color, stretched };
})();
