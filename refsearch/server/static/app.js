// The refsearch page: search a photo's colour references, colorize it, review the collection.
// Everything it shows comes from this server's /api; text is set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  file: null, previewUrl: null, resultUrl: null, confidenceUrl: null, hintsUrl: null, limits: {}, reviewed: {},
  // colour points: the server's session of the colorized photo, the points on it, the one selected
  session: null, size: null, points: [], selected: -1, rendering: false, pending: false, renders: 0,
};
const THUMB = 192;
const DEFAULT_TICKED = 3;

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(`the server did not answer (${err.message})`);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

const thumbnailUrl = (id, size) => `/api/images/${encodeURIComponent(id)}?size=${size}`;
const percent = (p) => `${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`;
const name = (text) => (text || "").replaceAll("_", " ");
const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

// -- start ---------------------------------------------------------------------------------------
async function start() {
  try {
    const health = await (await api("/api/health")).json();
    state.limits = health.limits || {};
    $("index-info").textContent = `${health.images} images · ${health.backbone}`;
    const select = $("method");
    for (const method of health.methods) {
      select.append(element("option", { value: method, text: method, selected: method === health.default_method }));
    }
    if (state.limits.max_k) $("k").max = state.limits.max_k;
  } catch (err) {
    $("index-info").textContent = "not connected";
    showError(err.message);
  }
}

// -- choosing a photo ----------------------------------------------------------------------------
function choose(file) {
  if (!file) return;
  showError("");
  if (state.limits.max_upload_bytes && file.size > state.limits.max_upload_bytes) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; this server takes at most `
      + `${(state.limits.max_upload_bytes / 1048576).toFixed(0)} MB`);
    return;
  }
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  const preview = $("query-preview");
  preview.src = state.previewUrl;
  preview.hidden = false;
  $("drop-text").textContent = file.name;
  $("search").disabled = false;
  $("colorized").hidden = true;
  state.session = null;
  setPoints([]);
  clearSearch();  // the last photo's references are not this one's
  search();
}

function clearSearch() {
  $("search-output").hidden = true;
  for (const id of ["predicted", "notes", "references"]) $(id).replaceChildren();
  $("timing").textContent = "";
  updateColorizeLabel();
}

function searchParams() {
  const params = new URLSearchParams();
  const value = (id) => $(id).value.trim();
  params.set("k", value("k") || "10");
  if (value("class")) params.set("class", value("class"));
  if ($("any-class").checked) params.set("any_class", "true");
  if ($("exclude-self").checked) params.set("exclude_self", "true");
  if ($("global-only").checked) params.set("global_only", "true");
  if (value("candidates")) params.set("candidates", value("candidates"));
  if (value("lum-weight")) params.set("lum_weight", value("lum-weight"));
  if (value("rescue")) params.set("rescue", value("rescue"));
  return params;
}

function upload() {
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  return form;
}

// -- search --------------------------------------------------------------------------------------
async function search() {
  if (!state.file) return;
  showError("");
  const button = $("search");
  button.disabled = true;
  button.textContent = "Searching…";
  try {
    const found = await (await api(`/api/search?${searchParams()}`, { method: "POST", body: upload() })).json();
    showSearch(found);
  } catch (err) {
    clearSearch();
    showError(err.message);
  } finally {
    button.disabled = false;
    button.textContent = "Search";
  }
}

function showSearch(found) {
  $("search-output").hidden = false;
  const predicted = $("predicted");
  predicted.replaceChildren(...found.predicted.map((guess) => {
    const bar = element("span", { class: "bar" });
    bar.style.width = `${Math.max(2, Math.round(60 * guess.probability))}px`;  // CSSOM: allowed by the page's policy
    const chip = element("button", { type: "button", title: `search ${guess.wnid} only` },
                         [`${name(guess.name)} ${percent(guess.probability)}`, bar]);
    chip.addEventListener("click", () => { $("class").value = guess.wnid; $("any-class").checked = false; search(); });
    return element("li", {}, [chip]);
  }));
  $("notes").replaceChildren(...found.notes.map((note) => element("li", { text: note })));
  $("timing").textContent = `${found.results.length} found · network ${Math.round(found.forward_ms)} ms, `
    + `search ${Math.round(found.search_ms)} ms · tick the ones to colorize from`;
  $("references").replaceChildren(...found.results.map(referenceCard));
  updateColorizeLabel();
}

function referenceCard(result) {
  const box = element("input", { type: "checkbox", class: "pick", value: String(result.id),
                                 checked: result.rank <= DEFAULT_TICKED });
  const card = element("figure", { class: "ref", "data-id": String(result.id) }, [
    element("img", { class: "ref-thumb", src: thumbnailUrl(result.id, THUMB), alt: result.label_name,
                     loading: "lazy", title: result.path }),
    element("label", {}, [box, ` ${result.rank}`]),
    element("figcaption", {}, [
      element("div", { class: "name", text: name(result.label_name) || result.label }),
      element("div", { text: `score ${result.score.toFixed(3)}` }),
      element("div", { class: "muted", text: `d_sem ${result.semantic.toFixed(3)} · d_lum ${result.luminance.toFixed(3)}` }),
    ]),
  ]);
  const mark = () => { card.classList.toggle("picked", box.checked); updateColorizeLabel(); };
  box.addEventListener("change", mark);
  card.classList.toggle("picked", box.checked);
  return card;
}

function picked() {
  return [...document.querySelectorAll("#references input.pick:checked")].map((box) => box.value);
}

function updateColorizeLabel() {
  const count = picked().length;
  $("colorize").textContent = count ? `Colorize from ${count} ticked` : "Colorize from the top 3";
}

// -- colorize ------------------------------------------------------------------------------------
function bytesOfDataUrl(url) {
  const binary = atob(url.slice(url.indexOf(",") + 1));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type: "image/png" });
}

async function colorize() {
  if (!state.file) return;
  showError("");
  const button = $("colorize");
  const status = $("colorize-status");
  button.disabled = true;
  status.textContent = "colorizing…";
  const params = searchParams();
  params.delete("k");
  params.set("output", "json");
  params.set("method", $("method").value);
  params.set("saturation", $("saturation").value);
  const form = upload();
  for (const id of picked()) form.append("ref_id", id);
  if (state.points.length) form.append("hints", JSON.stringify({ hints: state.points }));
  try {
    const done = await (await api(`/api/colorize?${params}`, { method: "POST", body: form })).json();
    showColorized(done);
    status.textContent = "";
  } catch (err) {
    status.textContent = "";
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

function showColorized(done) {
  state.session = done.session;
  state.size = { width: done.width, height: done.height };
  showResult(done);
  setPoints(done.hints);
  $("colorized").hidden = false;
  setSplit($("split").value);
  $("colorized").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function showResult(done) {
  for (const key of ["resultUrl", "confidenceUrl"]) if (state[key]) URL.revokeObjectURL(state[key]);
  state.resultUrl = URL.createObjectURL(bytesOfDataUrl(done.image));
  state.confidenceUrl = URL.createObjectURL(bytesOfDataUrl(done.confidence));
  $("before").src = state.previewUrl;
  $("result").src = state.resultUrl;
  $("painted").src = state.resultUrl;
  $("confidence").src = state.confidenceUrl;
  const download = $("download");
  download.href = state.resultUrl;
  download.download = `${stem()}_colorized.png`;
  const from = done.references.map((r) => name(r.label_name) || r.path.split("/").pop()).join(", ");
  $("colorized-info").textContent = `${done.width}×${done.height} · ${done.method}, ${done.seconds.toFixed(1)} s · `
    + `mean confidence ${done.mean_confidence.toFixed(2)} · from ${from}`;
  $("colorized-notes").replaceChildren(...done.notes.map((note) => element("li", { text: note })));
}

const stem = () => state.file.name.replace(/\.[^.]*$/, "");

// -- colour points ---------------------------------------------------------------------------------
function setPoints(points, selected = -1) {
  state.points = points.map((p) => ({ x: p.x, y: p.y, color: p.color }));
  state.selected = selected;
  drawPoints();
}

function drawPoints() {
  const { points, selected, size } = state;
  $("markers").replaceChildren(...points.map((point, index) => {
    const marker = element("div", { class: index === selected ? "marker selected" : "marker",
                                     title: `${point.x},${point.y} ${point.color}` });
    marker.dataset.index = String(index);
    marker.style.background = point.color;
    if (size) {
      marker.style.left = `${(100 * (point.x + 0.5)) / size.width}%`;
      marker.style.top = `${(100 * (point.y + 0.5)) / size.height}%`;
    }
    marker.addEventListener("pointerdown", (event) => startDrag(event, index, marker));
    return marker;
  }));
  $("point-list").replaceChildren(...points.map((point, index) => {
    const chip = element("span", { class: "chip" });
    chip.style.background = point.color;
    const remove = element("button", { type: "button", text: "×", title: "delete this point" });
    remove.addEventListener("click", (event) => { event.stopPropagation(); deletePoint(index); });
    const item = element("li", { class: index === selected ? "selected" : "" },
                         [chip, `${point.x}, ${point.y} ${point.color}`, remove]);
    item.addEventListener("click", () => select(index));
    return item;
  }));
  const palette = $("palette");
  palette.hidden = selected < 0;
  if (selected >= 0) {
    $("point-label").textContent = `${points[selected].x}, ${points[selected].y}`;
    $("point-color").value = points[selected].color;
    for (const swatch of $("swatches").children) {
      swatch.classList.toggle("current", swatch.dataset.color === points[selected].color);
    }
  }
  if (state.hintsUrl) URL.revokeObjectURL(state.hintsUrl);
  const saved = { ...(size || {}), hints: points };
  state.hintsUrl = URL.createObjectURL(new Blob([JSON.stringify(saved, null, 1)], { type: "application/json" }));
  $("download-hints").href = state.hintsUrl;
  if (state.file) $("download-hints").download = `${stem()}_points.json`;
}

function pixelAt(event) {
  const box = $("painted").getBoundingClientRect();
  const { width, height } = state.size;
  const clamp = (value, top) => Math.min(top - 1, Math.max(0, Math.floor(value)));
  return { x: clamp(((event.clientX - box.left) * width) / box.width, width),
           y: clamp(((event.clientY - box.top) * height) / box.height, height) };
}

async function addPoint(event) {
  if (!state.session || !state.size || event.target.classList.contains("marker")) return;
  if (state.points.length >= (state.limits.max_hints || Infinity)) {
    showError(`at most ${state.limits.max_hints} colour points`);
    return;
  }
  const { x, y } = pixelAt(event);
  setPoints([...state.points, { x, y, color: "#808080" }], state.points.length);
  const suggestions = await suggest(state.selected);
  if (suggestions && suggestions.length) setColour(state.selected, suggestions[0].color);
  else renderPoints();
}

async function suggest(index) {
  const point = state.points[index];
  if (!point || !state.session) return null;
  try {
    const url = `/api/sessions/${encodeURIComponent(state.session)}/suggestions?x=${point.x}&y=${point.y}`;
    const found = await (await api(url)).json();
    $("swatches").replaceChildren(...found.suggestions.map((suggestion) => {
      const swatch = element("button", { type: "button", class: "swatch",
                                         title: `${suggestion.source}${suggestion.share ? ` · ${percent(suggestion.share)}` : ""}` });
      swatch.dataset.color = suggestion.color;
      swatch.style.background = suggestion.color;
      swatch.addEventListener("click", () => setColour(state.selected, suggestion.color));
      return swatch;
    }));
    drawPoints();
    return found.suggestions;
  } catch (err) {
    if (err.status === 404) return null;  // the session was dropped: the next render colorizes again
    showError(err.message);
    return null;
  }
}

function select(index) {
  state.selected = index;
  drawPoints();
  suggest(index);
}

function setColour(index, color) {
  if (index < 0 || !state.points[index]) return;
  state.points[index] = { ...state.points[index], color };
  drawPoints();
  renderPoints();
}

function deletePoint(index) {
  if (index < 0 || !state.points[index]) return;
  const points = state.points.filter((_, i) => i !== index);
  setPoints(points, -1);
  renderPoints();
}

function startDrag(event, index, marker) {
  event.preventDefault();
  event.stopPropagation();
  if (state.selected !== index) select(index);
  marker.setPointerCapture(event.pointerId);
  let moved = false;
  const move = (e) => {
    const { x, y } = pixelAt(e);
    const point = state.points[index];
    if (x === point.x && y === point.y) return;
    moved = true;
    state.points[index] = { ...point, x, y };
    marker.style.left = `${(100 * (x + 0.5)) / state.size.width}%`;
    marker.style.top = `${(100 * (y + 0.5)) / state.size.height}%`;
  };
  const stop = () => {
    marker.removeEventListener("pointermove", move);
    marker.removeEventListener("pointerup", stop);
    marker.removeEventListener("pointercancel", stop);
    if (moved) { select(index); renderPoints(); }
  };
  marker.addEventListener("pointermove", move);
  marker.addEventListener("pointerup", stop);
  marker.addEventListener("pointercancel", stop);
}

// Applies the points on the server's session of the photo; a change made meanwhile is sent after it.
async function renderPoints() {
  if (!state.session) return;
  if (state.rendering) { state.pending = true; return; }
  state.rendering = true;
  state.pending = false;
  showError("");
  const started = performance.now();
  const points = state.points.length;
  try {
    const url = `/api/sessions/${encodeURIComponent(state.session)}/render?saturation=${$("saturation").value}`;
    const body = JSON.stringify({ hints: state.points });
    const done = await (await api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body })).json();
    showResult(done);
    state.renders += 1;
    $("points-canvas").dataset.renders = String(state.renders);
    $("points-info").textContent = `${count(points, "point")} · updated in ${Math.round(performance.now() - started)} ms `
      + `(server ${Math.round(done.seconds * 1000)} ms)`;
  } catch (err) {
    if (err.status === 404 && /session/.test(err.message)) {
      state.session = null;
      await colorize();  // the server dropped the session: colorize again, with the points
    } else {
      showError(err.message);
    }
  } finally {
    state.rendering = false;
    if (state.pending) renderPoints();
  }
}

async function loadPoints(file) {
  if (!file) return;
  try {
    const data = JSON.parse(await file.text());
    const holder = Array.isArray(data) ? { hints: data } : (data.done && data.done.length === 1 ? data.done[0] : data);
    if (!Array.isArray(holder.hints)) throw new Error("not colour points: expected a 'hints' list");
    if (holder.width && state.size && (holder.width !== state.size.width || holder.height !== state.size.height)) {
      throw new Error(`these points were placed on a ${holder.width}×${holder.height} photo; this one is `
        + `${state.size.width}×${state.size.height}`);
    }
    setPoints(holder.hints);
    renderPoints();
  } catch (err) {
    showError(`${file.name}: ${err.message}`);
  }
}

function setSplit(value) {
  $("result").style.clipPath = `inset(0 0 0 ${value}%)`;
  $("divider").style.left = `${value}%`;
}

// -- review --------------------------------------------------------------------------------------
function thumb(id, lines, keep = false) {
  return element("figure", { class: keep ? "thumb keep" : "thumb" }, [
    element("img", { src: thumbnailUrl(id, 160), alt: `image ${id}`, loading: "lazy" }),
    element("figcaption", {}, lines.map((line) => element("div", { text: line }))),
  ]);
}

async function review(kind, query = "") {
  const list = $(`${kind}-list`);
  list.replaceChildren(element("p", { class: "muted", text: "computing…" }));
  showError("");
  try {
    const found = await (await api(`/api/review/${kind}${query}`)).json();
    list.replaceChildren(...RENDER[kind](found));
  } catch (err) {
    list.replaceChildren();
    showError(err.message);
  }
}

const RENDER = {
  duplicates(found) {
    const unreadable = [...new Set(found.unreadable.map((check) => check.reason))].map((reason) =>
      element("p", { class: "muted", text: `not verified: ${reason}` }));
    if (!found.groups.length) {
      return [element("p", { text: "No near-duplicates in this index." }), ...unreadable];
    }
    return [...found.groups.map((group, number) => element("div", { class: "review-group" }, [
      element("h3", { text: `${number + 1}. ${group.kind} duplicates, ${count(group.members.length, "image")}` }),
      element("div", { class: "grid" }, group.members.map((m) => thumb(m.id, [
        m.keep ? "keep" : `copy · similarity ${m.similarity.toFixed(3)}`, `id ${m.id} · ${m.width}×${m.height}`,
        name(m.label_name)], m.keep))),
      element("ul", { class: "why" }, group.members.filter((m) => m.check).map((m) =>
        element("li", { text: `id ${m.id}: ${m.check.reason}` }))),
    ])), ...unreadable];
  },
  outliers(found) {
    if (!found.outliers.length) return [element("p", { text: "No outliers." })];
    return found.outliers.map((o, number) => {
      const row = [thumb(o.id, [`${number + 1}. score ${o.score.toFixed(3)}`, `id ${o.id}`, name(o.label_name)])];
      if (o.nearest_id >= 0) {
        row.push(element("span", { class: "arrow", text: "→" }),
          thumb(o.nearest_id, [`nearest: id ${o.nearest_id}`, `similarity ${o.nearest_similarity.toFixed(3)}`]));
      }
      return element("div", { class: "review-group grid" }, row);
    });
  },
  clusters(found) {
    return found.clusters.map((c) => element("div", { class: "review-group" }, [
      element("h3", { text: `cluster ${c.number}: ${count(c.size, "image")}, cohesion ${c.cohesion.toFixed(3)}` }),
      element("div", { class: "grid" }, c.members.map((id) => thumb(id, [`id ${id}`], id === c.representative))),
      ...(c.size > c.members.length ? [element("p", { class: "muted", text: `and ${c.size - c.members.length} more` })] : []),
    ]));
  },
};

function showView(view) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  if (view !== "search" && !state.reviewed[view]) {  // computed on the server on first look, then cached
    state.reviewed[view] = true;
    if (view === "duplicates") review("duplicates");
    if (view === "outliers") review("outliers", `?n=${$("outliers-n").value || 20}`);
    if (view === "clusters") review("clusters", $("clusters-n").value ? `?n=${$("clusters-n").value}` : "");
  }
}

// -- wiring --------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => choose(event.target.files[0]));
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const kind of ["dragleave", "drop"]) {
    drop.addEventListener(kind, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => { event.preventDefault(); choose(event.dataTransfer.files[0]); });
  $("options").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("colorize").addEventListener("click", colorize);
  $("split").addEventListener("input", (event) => setSplit(event.target.value));
  $("saturation").addEventListener("input", (event) => {
    $("saturation-value").textContent = Number(event.target.value).toFixed(2);
  });
  $("saturation").addEventListener("change", renderPoints);
  $("points-canvas").addEventListener("click", addPoint);
  $("point-color").addEventListener("input", (event) => setColour(state.selected, event.target.value));
  $("point-delete").addEventListener("click", () => deletePoint(state.selected));
  $("clear-hints").addEventListener("click", () => { setPoints([]); renderPoints(); });
  $("load-hints").addEventListener("change", (event) => { loadPoints(event.target.files[0]); event.target.value = ""; });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (!typing && state.selected >= 0 && (event.key === "Delete" || event.key === "Backspace")) {
      event.preventDefault();
      deletePoint(state.selected);
    }
  });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("outliers-load").addEventListener("click", () => review("outliers", `?n=${$("outliers-n").value || 20}`));
  $("clusters-load").addEventListener("click", () => {
    review("clusters", $("clusters-n").value ? `?n=${$("clusters-n").value}` : "");
  });
  start();
});
