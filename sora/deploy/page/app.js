// The particle explorer: ask the server what it serves (/healthz), take an input, show the prediction (or stream
// a continuation), then fetch the attention of every head and draw the one chosen. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { health: null, attention: null, layer: 0, head: 0, geometry: null, hover: null, file: null, last: null };

const EXAMPLES = {
  classification: ["A warm, funny and beautifully acted film.", "Dull, predictable and far too long.",
    "The plot is thin, but the performances are wonderful."],
  lm: ["It is a truth universally acknowledged", "Emma was", "She could not"],
  seq2seq: ["In the beginning God created the heaven and the earth.", "And God said, Let there be light."],
};

// --- talking to the server

function apiKey() { return sessionStorage.getItem("sora-key") || ""; }

async function call(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    askForKey();
    throw new Error("this server needs an API key: enter it above");
  }
  if (!response.ok) throw new Error(await problem(response));
  return response;
}

async function problem(response) {
  try {
    const body = await response.json();
    const detail = body.detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return detail || `${response.status} ${response.statusText}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

function askForKey() {
  $("keybar").hidden = false;
  $("key").focus();
}

// --- set-up: what the model is and which input it takes

async function start() {
  try {
    state.health = await (await fetch("/healthz")).json();
  } catch (e) {
    $("model").textContent = "cannot reach the server";
    return;
  }
  const h = state.health;
  const chips = [h.task.replace("_", " "), h.input, h.backend].map((c) => `<span class="chip">${esc(c)}</span>`);
  $("model").innerHTML = `<span class="name" title="${esc(h.model)}">${esc(shortName(h.model))}</span>${chips.join("")}`;
  if (h.api_key_required && !apiKey()) askForKey();
  const generating = h.generate && h.input === "text";
  const answering = h.task === "span";
  $("go").textContent = generating ? (h.task === "lm" ? "Continue" : "Translate") : answering ? "Answer" : "Predict";
  $("gen-row").hidden = !generating;
  if (h.task === "seq2seq") $("temperature").value = "0";  // a translation: the likeliest words
  $("input-title").textContent = generating ? (h.task === "lm" ? "Prompt" : "Source text") : answering ? "Question and context" : "Input";
  if (answering) {
    $("text-row").hidden = true;
    $("qa-row").hidden = false;
  } else if (h.input === "text") {
    $("text").placeholder = generating ? "Type the start of a text…" : "Type a text, e.g. a review…";
    showExamples(EXAMPLES[h.task] || []);
  } else {
    $("text-row").hidden = true;
    $("file-row").hidden = false;
    $("file").accept = h.input === "image" ? "image/*" : ".wav,audio/wav,audio/x-wav";
    $("file-label").textContent = h.input === "image" ? "Choose an image, or drop it here" : "Choose a WAV file, or drop it here";
  }
  $("go").disabled = false;
}

function shortName(path) {
  const parts = String(path).split(/[\\/]/).filter(Boolean);
  return parts.slice(-2).join("/") || path;
}

function showExamples(texts) {
  $("examples").innerHTML = texts.length ? '<span class="muted">try:</span>' : "";
  for (const text of texts) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "example";
    b.textContent = text;
    b.onclick = () => { $("text").value = text; submit(); };
    $("examples").append(b);
  }
}

// --- one submission: prediction (or generation), then attention

async function submit(event) {
  if (event) event.preventDefault();
  const h = state.health;
  if (!h) return;
  const input = await currentInput();
  if (!input) return;
  state.last = input;
  $("go").disabled = true;
  $("timing").textContent = "";
  const began = performance.now();
  try {
    if (h.generate && h.input === "text") await generate(input.text);
    else await predict(input);
    $("timing").textContent = `answered in ${Math.round(performance.now() - began)} ms`;
  } catch (e) {
    showError($("prediction"), e);
  } finally {
    $("go").disabled = false;
  }
  loadAttention(input);
}

async function currentInput() {
  if (state.health.task === "span") {
    const question = $("question").value, context = $("context").value;  // sent as typed: the answer indexes it
    if (!question.trim()) { $("question").focus(); return null; }
    if (!context.trim()) { $("context").focus(); return null; }
    return { question, context };
  }
  if (state.health.input === "text") {
    const text = $("text").value.trim();
    if (!text) { $("text").focus(); return null; }
    return { text };
  }
  if (!state.file) { $("file").click(); return null; }
  return { [state.health.input]: state.file };
}

async function predict(input) {
  const item = input.text !== undefined ? input.text : input;
  const response = await call("/v1/predict", { method: "POST", body: JSON.stringify({ inputs: [item] }) });
  const { predictions } = await response.json();
  showPrediction(predictions[0]);
}

async function generate(prompt) {
  const body = {
    prompt, stream: true,
    max_new_tokens: Number($("max-new").value) || 60,
    temperature: Number($("temperature").value),
  };
  if ($("top-k").value) body.top_k = Number($("top-k").value);
  const out = $("prediction");
  out.className = "generation";
  const from = state.health.task === "lm" ? `<span class="prompt">${esc(prompt)}</span>` : "";
  out.innerHTML = `${from}<span class="continuation" id="continuation"></span><span class="caret"></span>`;
  const response = await call("/v1/generate", { method: "POST", body: JSON.stringify(body) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (event.startsWith("event: error")) throw new Error(JSON.parse(data).error);
      if (data === "[DONE]") break;
      if (data) { text += JSON.parse(data).text; $("continuation").textContent = text; }
    }
  }
  out.querySelector(".caret")?.remove();
  if (state.health.task === "lm") state.last = { text: prompt + text };
}

function showPrediction(p) {
  const out = $("prediction");
  out.className = "";
  if (p.answer !== undefined) {
    const c = state.last.context;  // the answer's characters are context[start:end]
    out.innerHTML = `<div class="label" id="label">${esc(p.answer)}</div>
      <div class="score">score ${fmt(p.score)} (start + end logit)</div>
      <p class="context" id="answer-context">${esc(c.slice(0, p.start))}<mark id="answer">${esc(c.slice(p.start, p.end))}</mark>${esc(c.slice(p.end))}</p>`;
  } else if (p.scores) {
    const rows = Object.entries(p.scores).sort((a, b) => b[1] - a[1]);
    out.innerHTML = `<div class="label" id="label">${esc(p.label)}</div>
      <div class="score">${pct(p.score)} confident</div>
      <div class="bars">${rows.map(([name, s]) => `
        <div class="bar${name === p.label ? " top" : ""}"><span class="bar-name">${esc(name)}</span>
          <span class="bar-track"><i style="width:${(100 * s).toFixed(1)}%"></i></span>
          <span class="bar-value">${pct(s)}</span></div>`).join("")}</div>`;
  } else if (p.labels) {
    out.innerHTML = `<div class="tokens">${p.tokens.map((t, i) => `<span class="tok"><b>${esc(Heatmap.pretty(t))}</b>
      <small>${esc(p.labels[i])}</small></span>`).join("")}</div>`;
  } else {
    const text = p.transcript ?? p.translation ?? p.text ?? JSON.stringify(p);
    out.innerHTML = `<div class="label" id="label">${esc(text)}</div>`;
  }
}

function pct(x) { return `${(100 * x).toFixed(1)}%`; }

function showError(where, e) {
  where.className = "error";
  where.textContent = e.message || String(e);
}

// --- attention: fetch, pick a layer and head, draw

async function loadAttention(input) {
  $("attn-note").textContent = "Reading the attention of every head…";
  try {
    const body = input.text !== undefined ? { text: input.text } : input;
    const response = await call("/v1/attention", { method: "POST", body: JSON.stringify(body) });
    state.attention = await response.json();
  } catch (e) {
    $("attn-body").hidden = true;
    showError($("attn-note"), e);
    return;
  }
  const a = state.attention;
  if (!a.layers.length) {
    $("attn-note").textContent = "This model has no attention heads left (pruned away).";
    $("attn-body").hidden = true;
    return;
  }
  $("attn-note").className = "note";
  $("attn-note").textContent = a.importance
    ? `Importance: ${a.importance.method} scores from ${a.importance.source}. Click a head to see its pattern.`
    : "No analysis beside this model (sora analyze writes one): heads are shown without importance.";
  $("attn-body").hidden = false;
  fillLayers();
  const best = bestHead();
  choose(best.layer, best.head);
}

function layerName(layer) {
  return layer.heads.length ? layer.heads[0].name.replace(/\.attn\.head\.\d+$/, "") : `layer ${layer.layer}`;
}

function fillLayers() {
  const select = $("layer");
  select.innerHTML = state.attention.layers.map((l, i) => `<option value="${i}">${esc(layerName(l))}</option>`).join("");
  select.disabled = false;
}

function bestHead() {
  // Keep the head the user was looking at when it still exists; else the most important one; else the first.
  const layers = state.attention.layers;
  if (state.layer < layers.length && state.head < layers[state.layer].heads.length && state.picked) {
    return { layer: state.layer, head: state.head };
  }
  let best = { layer: 0, head: 0, rank: Infinity };
  layers.forEach((l, i) => l.heads.forEach((h, j) => { if (h.rank && h.rank < best.rank) best = { layer: i, head: j, rank: h.rank }; }));
  return best;
}

function choose(layer, head) {
  state.layer = layer;
  state.head = head;
  state.hover = null;
  $("layer").value = String(layer);
  const heads = state.attention.layers[layer].heads;
  $("head").innerHTML = heads.map((h, j) => `<option value="${j}">${esc(h.name)}${h.importance != null
    ? ` · importance ${fmt(h.importance)}` : ""}</option>`).join("");
  $("head").value = String(head);
  $("head").disabled = false;
  fillHeadList(heads);
  drawMap();
}

function fillHeadList(heads) {
  const list = $("heads");
  list.innerHTML = "";
  const top = Math.max(...state.attention.layers.flatMap((l) => l.heads.map((h) => h.importance || 0)), 1e-12);
  heads.forEach((h, j) => {
    const li = document.createElement("li");
    li.className = j === state.head ? "selected" : "";
    li.tabIndex = 0;
    li.title = h.name;
    const thumb = document.createElement("canvas");
    Heatmap.thumbnail(thumb, h.pattern, 44);
    const known = h.importance != null;
    li.innerHTML = `<span class="head-text"><span class="head-name">head ${j}</span>
      <span class="head-meta">${known ? `${h.rank ? `#${h.rank} · ` : ""}${fmt(h.importance)}` : esc(h.name)}${h.type ? ` · ${esc(h.type)}` : ""}</span>
      ${known ? `<span class="imp"><i style="width:${Math.max(2, (100 * Math.max(0, h.importance)) / top)}%"></i></span>` : ""}</span>`;
    li.prepend(thumb);
    li.onclick = () => { state.picked = true; choose(state.layer, j); };
    li.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); li.onclick(); } };
    list.append(li);
  });
}

function drawMap() {
  const a = state.attention;
  if (!a) return;
  const head = a.layers[state.layer].heads[state.head];
  const rows = a.tokens.slice(0, head.pattern.length);
  const cols = a.tokens.slice(0, head.pattern[0] ? head.pattern[0].length : 0);
  const width = $("map-wrap").clientWidth || 600;
  const stretch = $("stretch").checked;
  const pattern = stretch ? Heatmap.stretched(head.pattern) : head.pattern;
  state.geometry = Heatmap.draw($("map"), pattern, rows, cols, width, state.hover);
  $("legend-max").textContent = stretch ? "row max" : "1";
  const extra = head.importance != null ? ` · importance ${fmt(head.importance)}${head.rank ? ` (#${head.rank})` : ""}` : "";
  $("map-title").innerHTML = `<code>${esc(head.name)}</code>${extra}${head.type ? ` · ${esc(head.type)}` : ""}`;
}

function hover(event) {
  const a = state.attention;
  if (!a || !state.geometry) return;
  const box = $("map").getBoundingClientRect();
  const cell = Heatmap.cellAt(state.geometry, event.clientX - box.left, event.clientY - box.top);
  const tip = $("tip");
  if (!cell) { tip.hidden = true; if (state.hover) { state.hover = null; drawMap(); } return; }
  if (!state.hover || state.hover.row !== cell.row || state.hover.col !== cell.col) {
    state.hover = cell;
    drawMap();
  }
  const value = a.layers[state.layer].heads[state.head].pattern[cell.row][cell.col];
  tip.innerHTML = `<b>${esc(Heatmap.pretty(a.tokens[cell.row]))}</b> → <b>${esc(Heatmap.pretty(a.tokens[cell.col]))}</b>: ${value.toFixed(3)}`;
  tip.hidden = false;
  tip.style.left = `${Math.min(event.clientX - box.left + 14, box.width - tip.offsetWidth - 4)}px`;
  tip.style.top = `${event.clientY - box.top + 14}px`;
}

function fmt(x) { return Math.abs(x) >= 100 || (Math.abs(x) < 0.01 && x !== 0) ? x.toExponential(1) : x.toFixed(2); }

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// --- files (image and audio models)

function takeFile(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    state.file = String(reader.result).split(",", 2)[1];
    $("file-label").textContent = file.name;
    const url = URL.createObjectURL(file);
    $("preview").innerHTML = state.health.input === "image"
      ? `<img src="${url}" alt="the image to classify">` : `<audio controls src="${url}"></audio>`;
    submit();
  };
  reader.readAsDataURL(file);
}

// --- wiring

$("form").addEventListener("submit", submit);
for (const id of ["text", "question", "context"]) {
  $(id).addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e); });
}
$("layer").addEventListener("change", () => { state.picked = true; choose(Number($("layer").value), 0); });
$("head").addEventListener("change", () => { state.picked = true; choose(state.layer, Number($("head").value)); });
$("stretch").addEventListener("change", drawMap);
$("map").addEventListener("mousemove", hover);
$("map").addEventListener("mouseleave", () => { $("tip").hidden = true; state.hover = null; drawMap(); });
$("file").addEventListener("change", () => takeFile($("file").files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); $("drop").classList.remove("over"); takeFile(e.dataTransfer.files[0]); });
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("sora-key", $("key").value.trim());
  $("keybar").hidden = true;
  if (state.last || (state.health && state.health.input === "text" && $("text").value.trim())) submit();
});
let resizing;
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(drawMap, 100); });
start();
