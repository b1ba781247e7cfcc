// imgrag web viewer: plain JavaScript, no framework, nothing fetched from elsewhere.
// Every string from the index (OCR text, file names, metadata: attacker-controlled) reaches the
// DOM through textContent or setAttribute, never innerHTML; the server's CSP forbids inline code.
"use strict";

(() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const state = { session: null, polling: null };
  const RETURN_TO = "imgrag-return-to";
  const OVERLAYS = [
    ["match", "Match"], ["ocr", "OCR lines"], ["layout", "Layout"], ["table", "Tables"],
    ["seal", "Seals"], ["date", "Dates"], ["pii", "PII"], ["tile", "Tiles"],
  ];
  const ROUTE_NAMES = {
    image: "image ↔ text", bm25: "keywords (BM25)", text_vector: "OCR-text vector",
    region_text: "text region", region_tile: "image tile", similar: "looks similar", rerank: "region re-rank",
  };

  // -- DOM helpers ------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = String(v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  const main = () => document.getElementById("main");
  function toast(msg) {
    const t = document.getElementById("toast");
    t.textContent = msg;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
  }
  function errorBox(e) { return h("p", { class: "error", role: "alert", text: e.message || String(e) }); }
  const fmt = (n, d = 0) => Number(n).toFixed(d);
  const boxText = (b) => (b ? "[" + b.map((v) => fmt(v)).join(", ") + "]" : "—");
  const enc = encodeURIComponent;

  // -- server calls -----------------------------------------------------------------------------
  async function api(path, opts) {
    let resp;
    try {
      resp = await fetch(path, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, opts || {}));
    } catch (_) { // no answer at all (the browser says only "Failed to fetch"): say what that means
      throw new Error("The server did not answer: it may be stopped or restarting, or the network is down. Try again in a moment.");
    }
    if (resp.status === 401) {
      // the session ended (idle, logged out elsewhere, the server restarted): log in again, then come
      // back to this view, not to an empty search
      try { sessionStorage.setItem(RETURN_TO, location.hash); } catch (_) { /* storage off: start over */ }
      location.href = "/login";
      throw new Error("not logged in");
    }
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) {
      const msg = data && data.error ? data.error + (data.hint ? " — " + data.hint : "") : "HTTP " + resp.status;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return data;
  }
  function post(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": state.session.csrf },
      body: JSON.stringify(body),
    });
  }
  const imgUrl = (id, what, params) => "/api/image/" + enc(id) + "/" + what + (params ? "?" + new URLSearchParams(params) : "");

  // -- routing ----------------------------------------------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { view: parts[0] || "search", arg: parts[1] || null, params: new URLSearchParams(query || "") };
  }
  function go(view, arg, params) {
    let hash = "#/" + view + (arg ? "/" + enc(arg) : "");
    const qs = params ? new URLSearchParams(params).toString() : "";
    if (qs) hash += "?" + qs;
    if (location.hash === hash) render(); else location.hash = hash;
  }
  async function render() {
    if (state.polling) { clearTimeout(state.polling); state.polling = null; }
    const { view, arg, params } = parseHash();
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === view || (view === "image" && a.dataset.nav === "search")));
    const m = clear(main());
    try {
      if (view === "image" && arg) await pageView(m, arg, params);
      else if (view === "ask") await askView(m, arg);
      else if (view === "collection") await collectionView(m);
      else await searchView(m, params);
    } catch (e) {
      m.appendChild(errorBox(e));
    }
    // The view replaced what had the keyboard focus (the link or button that led here): move it to
    // the new view's heading, so Tab goes on from there and a screen reader reads where it landed.
    if (!document.activeElement || document.activeElement === document.body) {
      const target = m.querySelector("[data-autofocus], .error");
      if (target) {
        if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
        target.focus();
      }
    }
  }

  // -- filters (built from the server's Filters model) ------------------------------------------
  function filterForm(values) {
    const fields = state.session.filters;
    const box = h("div", { class: "filters" });
    for (const f of fields) {
      const v = values[f.name];
      const id = "f-" + f.name;
      const label = h("label", { for: id, text: f.name.replace(/_/g, " "), title: f.description });
      let input;
      if (f.kind === "date") input = h("input", { id, type: "date", value: v || "" });
      else if (f.kind === "bool") {
        input = h("select", { id }, h("option", { value: "", text: "any" }), h("option", { value: "true", text: "yes" }), h("option", { value: "false", text: "no" }));
        input.value = v === true ? "true" : v === false ? "false" : "";
      } else if (f.kind === "list" && f.choices.length) {
        input = h("span", { id, class: "choices" }, f.choices.map((c) =>
          h("label", { class: "choice" }, h("input", { type: "checkbox", value: c, checked: Array.isArray(v) && v.includes(c) }), c.replace(/_/g, " "))));
      } else if (f.kind === "list") input = h("input", { id, type: "text", placeholder: "comma-separated", value: Array.isArray(v) ? v.join(", ") : "" });
      else if (f.kind === "map") input = h("input", { id, type: "text", placeholder: "key=value, key=value", value: v ? Object.entries(v).map(([a, b]) => a + "=" + b).join(", ") : "" });
      else input = h("input", { id, type: "text", value: v || "" });
      input.dataset.filter = f.name;
      input.dataset.kind = f.kind;
      box.appendChild(h("div", { class: "field" }, label, input));
    }
    return box;
  }
  function readFilters(box) {
    const out = {};
    box.querySelectorAll("[data-filter]").forEach((el) => {
      const name = el.dataset.filter, kind = el.dataset.kind;
      if (kind === "list" && el.classList.contains("choices")) {
        const picked = [...el.querySelectorAll("input:checked")].map((c) => c.value);
        if (picked.length) out[name] = picked;
      } else if (kind === "list") {
        const items = el.value.split(",").map((s) => s.trim()).filter(Boolean);
        if (items.length) out[name] = items;
      } else if (kind === "map") {
        const m = {};
        el.value.split(",").forEach((pair) => {
          const i = pair.indexOf("=");
          if (i > 0) m[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
        });
        if (Object.keys(m).length) out[name] = m;
      } else if (kind === "bool") {
        if (el.value) out[name] = el.value === "true";
      } else if (el.value.trim()) out[name] = el.value.trim();
    });
    return out;
  }
  function parseJSON(raw, fallback) { try { return raw ? JSON.parse(raw) : fallback; } catch (_) { return fallback; } }

  // -- boxes on images --------------------------------------------------------------------------
  function overlay(width, height, cls) {
    return svg("svg", { class: "overlay " + (cls || ""), viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  }
  function rect(b, cls, title) {
    const r = svg("rect", {
      class: cls, x: b[0], y: b[1], width: Math.max(1, b[2] - b[0]), height: Math.max(1, b[3] - b[1]),
      "vector-effect": "non-scaling-stroke",
    });
    if (title) r.appendChild(svg("title", { text: title }));
    return r;
  }
  function outlined(src, width, height, boxes, cls) {
    const o = overlay(width, height);
    for (const b of boxes) if (b) o.appendChild(rect(b, "match"));
    return h("span", { class: "outlined " + (cls || "") }, h("img", { src, alt: "", loading: "lazy" }), o);
  }

  // -- search -----------------------------------------------------------------------------------
  async function searchView(m, params) {
    const q = params.get("q") || "", mode = params.get("mode") || "hybrid", like = params.get("like") || "";
    const filters = parseJSON(params.get("f"), {});
    const cursor = params.get("c") || "", back = params.get("back") === "1";
    const k = Math.min(state.session.max_k, Math.max(1, parseInt(params.get("k") || "20", 10) || 20));
    const fbox = filterForm(filters);
    const input = h("input", { type: "search", name: "q", id: "q", value: q, placeholder: "Search text on the page or what it shows (中文 / English)", "aria-label": "query" });
    const modeSel = h("select", { id: "mode", "aria-label": "mode" }, ["hybrid", "vector", "keyword"].map((x) => h("option", { value: x, text: x })));
    modeSel.value = mode;
    const nFilters = Object.keys(filters).length;
    const form = h("form", { class: "searchbar", id: "search-form", onsubmit: (ev) => {
      ev.preventDefault();
      const f = readFilters(fbox);
      const p = { q: input.value.trim(), mode: modeSel.value };
      if (Object.keys(f).length) p.f = JSON.stringify(f);
      if (params.get("k")) p.k = k;
      go("search", null, p);
    } },
      input, modeSel, h("button", { type: "submit", text: "Search" }),
      h("details", { class: "filter-panel", open: nFilters > 0 }, h("summary", { text: "Filters" + (nFilters ? ` (${nFilters})` : "") }), fbox));
    m.appendChild(form);
    if (!q && !like) {
      m.appendChild(h("p", { class: "hint", text: "Type a query. Hits show the matched region outlined, the snippet, and why each ranked where it did." }));
      input.focus();
      return;
    }
    const results = h("section", { id: "results", "aria-busy": "true" }, h("p", { class: "hint", text: "Searching…" }));
    m.appendChild(results);
    const p = { q, mode, k };
    if (nFilters) p.filters = JSON.stringify(filters);
    if (like) p.like = like;
    // Pages move along one ranked list with the server's signed cursors (as search_images does over
    // MCP): "c" is the cursor of the page shown, "back=1" asks for the page before it. A write to the
    // index that changed the hits shown so far is said, instead of repeating or skipping hits.
    if (cursor) p.cursor = cursor;
    if (cursor && back) p.back = 1;
    const base = Object.fromEntries(params.entries());
    delete base.c; delete base.back; delete base.o;
    let res;
    try {
      res = await api("/api/search?" + new URLSearchParams(p));
    } catch (e) {
      clear(results).removeAttribute("aria-busy");
      results.appendChild(errorBox(e));
      if (cursor && e.status === 400) results.appendChild(h("p", {}, h("a", { href: "#", class: "button", id: "start-over", text: "Start the search over", onclick: (ev) => { ev.preventDefault(); go("search", null, base); } })));
      return;
    }
    clear(results).removeAttribute("aria-busy");
    if (back || params.has("o")) {
      // the address of the page now shown: its own cursor (none for page 1), so reloading it or
      // coming back to it later shows this page again
      const here = res.offset > 0 ? Object.assign({}, base, { c: res.cursor }) : base;
      history.replaceState(null, "", "#/search?" + new URLSearchParams(here));
    }
    const head = like ? `Images like ${like.slice(0, 12)}…` + (q ? ` and “${q}”` : "") : `“${res.query || q}”`;
    results.appendChild(h("p", { class: "summary", id: "result-summary", tabindex: "-1", "data-autofocus": true,
      text: res.hits.length ? `${head}: hits ${res.offset + 1}–${res.offset + res.hits.length} of ${res.candidates} candidates · ${fmt(res.timings_ms.total || 0)} ms` : `${head}: no hits` }));
    if (res.note) results.appendChild(h("p", { class: "hint", id: "result-note", text: res.note }));
    const grid = h("div", { class: "hits" });
    res.hits.forEach((hit, i) => grid.appendChild(hitCard(hit, res.offset + i + 1)));
    results.appendChild(grid);
    const nav = h("nav", { class: "pager" });
    if (res.offset > 0) nav.appendChild(h("a", { href: "#", class: "button", id: "prev", text: "← Previous", onclick: (e) => { e.preventDefault(); go("search", null, Object.assign({}, base, { c: res.cursor, back: "1" })); } }));
    if (res.next_cursor) nav.appendChild(h("a", { href: "#", class: "button", id: "next", text: "Next →", onclick: (e) => { e.preventDefault(); go("search", null, Object.assign({}, base, { c: res.next_cursor })); } }));
    results.appendChild(nav);
  }

  function hitCard(hit, rank) {
    const region = hit.region;
    const open = "#/image/" + enc(hit.image_id) + (region ? "?hl=" + region.bbox.map((v) => fmt(v)).join(",") : "");
    const thumb = outlined(imgUrl(hit.image_id, "thumb.png", { side: 256 }), hit.width, hit.height, region ? [region.bbox] : [], "thumb");
    const total = Object.values(hit.contributions || {}).reduce((a, b) => a + b, 0) || 1;
    const why = h("table", { class: "why" }, h("caption", { text: "Why it ranked here" }),
      h("tbody", {}, Object.entries(hit.contributions || {}).sort((a, b) => b[1] - a[1]).map(([route, c]) =>
        h("tr", {},
          h("th", { text: ROUTE_NAMES[route] || route, title: route }),
          h("td", { class: "rank", text: hit.ranks[route] ? "#" + hit.ranks[route] : "" }),
          h("td", { class: "bar" }, h("span", { style: null, class: "fill", dataset: { w: String(Math.round((100 * c) / total)) } })),
          h("td", { class: "num", text: fmt(c, 4) })))));
    why.querySelectorAll(".fill").forEach((el) => { el.style.width = el.dataset.w + "%"; });
    return h("article", { class: "hit", dataset: { imageId: hit.image_id } },
      h("a", { href: open, class: "thumb-link", title: "open the page" }, thumb),
      h("div", { class: "hit-body" },
        h("h3", {}, h("span", { class: "rank-no", text: "#" + rank }), " ", h("a", { href: open, class: "file", text: hit.file }), h("span", { class: "muted", text: ` p${hit.page}/${hit.n_pages}` })),
        h("p", { class: "muted small", text: `${hit.quality.replace(/_/g, " ")} · ${hit.width}×${hit.height} · score ${fmt(hit.score, 4)}` + (region ? ` · ${region.kind}${region.label ? " " + region.label : ""} ${boxText(region.bbox)}` : "") }),
        hit.snippet ? h("blockquote", { class: "snippet", text: hit.snippet }) : null,
        hit.dates && hit.dates.length ? h("p", { class: "small", text: "dates: " + hit.dates.join(", ") }) : null,
        why,
        h("p", { class: "actions" },
          h("a", { href: open, class: "button", text: "Open" }),
          h("a", { href: "#/search?" + new URLSearchParams({ like: hit.image_id }), class: "button similar", text: "Find similar" }))));
  }

  // -- page view --------------------------------------------------------------------------------
  async function pageView(m, id, params) {
    const rec = await api("/api/image/" + enc(id));
    const hl = (params.get("hl") || "").split(",").map(Number);
    const match = hl.length === 4 && hl.every((v) => Number.isFinite(v)) ? hl : null;
    const W = rec.width, H = rec.height;
    const img = h("img", { src: imgUrl(id, "page.png"), alt: rec.file + " page " + rec.page, id: "page-img", draggable: "false" });
    const o = overlay(W, H, "page-overlay");
    o.id = "page-overlay";
    const layers = {};
    for (const [key] of OVERLAYS) { layers[key] = svg("g", { class: "layer layer-" + key, "data-layer": key }); o.appendChild(layers[key]); }
    if (match) layers.match.appendChild(rect(match, "match", "matched region"));
    rec.ocr_lines.forEach((ln, i) => {
      const r = rect(ln.bbox, "ocr", ln.text + `  (conf ${fmt(ln.confidence, 2)}) — click to copy`);
      r.dataset.line = String(i);
      r.addEventListener("click", () => copyLine(ln.text, i));
      layers.ocr.appendChild(r);
    });
    rec.layout.forEach((b) => layers.layout.appendChild(rect(b.bbox, "layout kind-" + String(b.kind).replace(/[^a-z_]/gi, ""), `${b.kind} (${fmt(b.confidence, 2)})`)));
    rec.tables.forEach((t, i) => layers.table.appendChild(rect(t.bbox, "table", `table ${i + 1}: ${t.rows.length} rows`)));
    rec.seals.forEach((s) => layers.seal.appendChild(rect(s.bbox, "seal", `${s.color} ${s.shape} seal (${fmt(s.confidence, 2)})`)));
    rec.dates.forEach((d) => d.bbox && layers.date.appendChild(rect(d.bbox, "date", `${d.text} → ${d.date} (${d.precision})`)));
    (rec.pii || []).forEach((p) => p.bbox && layers.pii.appendChild(rect(p.bbox, "pii", `personal data: ${p.kind}`)));
    rec.tiles.forEach((t) => layers.tile.appendChild(rect(t.bbox, "tile", `tile ${t.label}`)));

    const counts = { match: match ? 1 : 0, ocr: rec.ocr_lines.length, layout: rec.layout.length, table: rec.tables.length, seal: rec.seals.length,
      date: rec.dates.filter((d) => d.bbox).length, pii: (rec.pii || []).filter((p) => p.bbox).length, tile: rec.tiles.length };
    const on = { match: true, ocr: false, layout: false, table: false, seal: true, date: false, pii: true, tile: false };
    const canvas = h("div", { class: "canvas", id: "canvas" }, img, o);
    const stage = h("div", { class: "stage", id: "stage" }, canvas);
    let zoom = 0;
    const setZoom = (z) => {
      zoom = Math.min(8, Math.max(0.05, z));
      canvas.style.width = Math.round((img.naturalWidth || W) * zoom) + "px";
      zoomLabel.textContent = Math.round(zoom * 100) + "%";
    };
    const fit = () => setZoom((stage.clientWidth - 8) / (img.naturalWidth || W));
    const zoomLabel = h("span", { class: "zoom-label", id: "zoom-label", text: "" });
    const toggles = h("div", { class: "toggles", role: "group", "aria-label": "overlays" }, OVERLAYS.map(([key, label]) => {
      const cb = h("input", { type: "checkbox", id: "t-" + key, checked: on[key] && counts[key] > 0, disabled: counts[key] === 0 });
      const apply = () => layers[key].classList.toggle("hidden", !cb.checked);
      cb.addEventListener("change", apply);
      apply();
      return h("label", { class: "toggle" + (counts[key] ? "" : " none"), for: "t-" + key }, cb, `${label} (${counts[key]})`);
    }));
    const toolbar = h("div", { class: "toolbar" }, toggles,
      h("span", { class: "zoom" },
        h("button", { type: "button", id: "zoom-out", title: "zoom out", text: "−", onclick: () => setZoom(zoom / 1.25) }),
        zoomLabel,
        h("button", { type: "button", id: "zoom-in", title: "zoom in", text: "+", onclick: () => setZoom(zoom * 1.25) }),
        h("button", { type: "button", id: "zoom-fit", text: "Fit", onclick: fit }),
        h("button", { type: "button", id: "zoom-100", text: "1:1", onclick: () => setZoom(W / (img.naturalWidth || W)) })));
    stage.addEventListener("wheel", (e) => { if (e.ctrlKey) { e.preventDefault(); setZoom(zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1)); } }, { passive: false });
    img.addEventListener("load", fit);

    const side = h("aside", { class: "side" }, recordPanel(rec, id));
    m.appendChild(h("div", { class: "page-view", id: "page-view", dataset: { imageId: id } },
      h("div", { class: "viewer" }, toolbar, stage), side));
    if (img.complete && img.naturalWidth) fit();
  }

  function copyLine(text, i) {
    const done = () => toast("Copied: " + (text.length > 60 ? text.slice(0, 60) + "…" : text));
    document.querySelectorAll("#page-overlay rect.ocr.picked, .lines li.picked").forEach((el) => el.classList.remove("picked"));
    document.querySelectorAll(`#page-overlay rect.ocr[data-line="${i}"], .lines li[data-line="${i}"]`).forEach((el) => el.classList.add("picked"));
    const fallback = () => {
      const ta = h("textarea", { class: "offscreen" });
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      try { document.execCommand("copy"); } catch (_) { /* nothing else to try */ }
      ta.remove();
      done();
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }

  function dl(pairs) {
    return h("dl", { class: "kv" }, pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "").map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v instanceof Node ? v : String(v))]));
  }

  function recordPanel(rec, id) {
    const pages = rec.pages.length > 1 ? h("span", { class: "pages" }, rec.pages.map((p) =>
      p.image_id === id ? h("b", { text: String(p.page) }) : h("a", { href: "#/image/" + enc(p.image_id), text: String(p.page) }))) : `${rec.page} / ${rec.n_pages}`;
    const sections = [
      h("h2", { class: "file", id: "page-file", text: rec.file, tabindex: "-1", "data-autofocus": true }),
      h("p", { class: "actions" },
        h("a", { href: "#/search?" + new URLSearchParams({ like: id }), class: "button", id: "find-similar", text: "Find similar" }),
        h("a", { href: imgUrl(id, "page.png"), class: "button", target: "_blank", rel: "noopener", text: "Open image" })),
      dl([["image id", h("code", { text: id })], ["source", rec.path], ["page", pages], ["size", `${rec.width} × ${rec.height} px` + (rec.dpi ? ` · ${fmt(rec.dpi)} dpi` : "")],
        ["format", rec.format], ["quality", rec.quality.replace(/_/g, " ")],
        ["preprocessing", rec.enhancements.map((e) => e.name).join(" → ") || "none"], ["caption", rec.caption],
        ["indexed", rec.indexed_at.replace("T", " ").slice(0, 19)], ["index version", rec.index_version]]),
      h("details", { class: "models" }, h("summary", { text: "Models used" }), dl(Object.entries(rec.models))),
      h("h3", { text: "Access and metadata" }),
      dl([["ACL", rec.acl.length ? rec.acl.join(", ") : "everyone"], ["tags", rec.tags.join(", ") || "—"]]),
      Object.keys(rec.meta).length ? h("table", { class: "meta", id: "meta-table" }, h("tbody", {}, Object.entries(rec.meta).map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { text: v }))))) : null,
    ];
    if (rec.seals.length) sections.push(h("h3", { text: `Seals (${rec.seals.length})` }), h("ul", {}, rec.seals.map((s) => h("li", { text: `${s.color} ${s.shape} · ${boxText(s.bbox)} · ${fmt(s.confidence, 2)}` }))));
    if (rec.dates.length) sections.push(h("h3", { text: `Dates (${rec.dates.length})` }), h("ul", {}, rec.dates.map((d) => h("li", { text: `${d.date} (${d.precision}) “${d.text}”` }))));
    if ((rec.pii || []).length) sections.push(h("h3", { text: `Personal data (${rec.pii.length})` }), h("ul", {}, rec.pii.map((p) => h("li", { text: `${p.kind}: ${p.text}` }))));
    rec.tables.forEach((t, i) => sections.push(h("h3", { text: `Table ${i + 1}` }),
      h("div", { class: "table-wrap" }, h("table", { class: "cells" }, h("tbody", {}, t.rows.map((row) => h("tr", {}, row.map((c) => h("td", { text: c })))))))));
    sections.push(h("h3", { text: `OCR lines (${rec.ocr_lines.length}) — click (or Enter) to copy` }),
      h("ol", { class: "lines", id: "ocr-lines" }, rec.ocr_lines.map((ln, i) =>
        h("li", { dataset: { line: String(i) }, title: `${boxText(ln.bbox)} conf ${fmt(ln.confidence, 2)}`, text: ln.text, tabindex: "0",
          onclick: () => copyLine(ln.text, i),
          onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); copyLine(ln.text, i); } } }))));
    return h("div", {}, sections);
  }

  // -- ask --------------------------------------------------------------------------------------
  async function askView(m, jobId) {
    if (!state.session.can_ask) { m.appendChild(h("p", { class: "hint", text: "Asking is not available on this server." })); return; }
    const fbox = filterForm({});
    const q = h("textarea", { id: "question", rows: "2", placeholder: "Ask a question about the images, e.g. 甲方是谁? or What is the total amount?", "aria-label": "question", maxlength: "2000" });
    const status = h("p", { class: "hint", id: "ask-status" });
    const form = h("form", { class: "askbar", id: "ask-form", onsubmit: async (ev) => {
      ev.preventDefault();
      if (!q.value.trim()) return;
      try {
        const r = await post("/api/ask", { question: q.value.trim(), filters: readFilters(fbox) });
        go("ask", r.id);
      } catch (e) { clear(status).appendChild(errorBox(e)); }
    } }, q, h("button", { type: "submit", id: "ask-button", text: "Ask" }),
      h("details", { class: "filter-panel" }, h("summary", { text: "Filters" }), fbox));
    m.appendChild(form);
    m.appendChild(status);
    if (!jobId) {
      status.textContent = "The agent plans, searches, reads the pages it found (with a language model, it also crops and re-reads regions), then answers with checked citations. Each step shows here as it runs.";
      return;
    }
    const out = h("div", { class: "ask-out", id: "ask-out" });
    m.appendChild(out);
    const poll = async () => {
      let job;
      try { job = await api("/api/ask/" + enc(jobId)); } catch (e) { clear(out).appendChild(errorBox(e)); return; }
      q.value = job.question;
      drawJob(out, status, job, jobId);
      if (job.status === "running" && parseHash().arg === jobId) state.polling = setTimeout(poll, 1000);
    };
    await poll();
  }

  function drawJob(out, status, job, jobId) {
    status.textContent = job.status === "running" ? `Working… ${fmt(job.seconds)} s` : job.status === "done" ? `Answered in ${fmt(job.seconds)} s` : "";
    clear(out);
    if (job.status === "error") out.appendChild(errorBox(new Error(job.error)));
    if (job.result) out.appendChild(answerPanel(job.result, jobId));
    out.appendChild(h("section", { class: "trace", id: "trace" }, h("h2", { text: "Trace" }), job.steps.map(stepPanel)));
  }

  function stepPanel(step) {
    return h("details", { class: "step node-" + step.node, open: true },
      h("summary", {}, h("b", { text: step.node }), step.round ? ` · round ${step.round + 1}` : "", h("span", { class: "muted", text: ` · ${fmt(step.ms)} ms · ${step.calls.length} tool call(s)` })),
      step.decisions.length ? h("ul", { class: "decisions" }, step.decisions.map((d) => h("li", { text: d }))) : null,
      step.calls.length ? h("ol", { class: "calls" }, step.calls.map(callItem)) : null);
  }

  function callItem(c) {
    const li = h("li", { class: "call call-" + c.tool + (c.error ? " failed" : "") });
    const ms = h("span", { class: "muted", text: ` ${fmt(c.ms)} ms` });
    if (c.tool === "search_images") {
      li.append(h("b", { text: "search" }), ` [${c.mode}] `, h("q", { text: c.query || "" }), ms);
      if (c.hits.length) li.appendChild(h("ol", { class: "mini-hits" }, c.hits.map((x) =>
        h("li", {}, h("a", { href: "#/image/" + enc(x.image_id) + (x.bbox ? "?hl=" + x.bbox.map((v) => fmt(v)).join(",") : ""), text: `${x.file || x.image_id.slice(0, 12)} p${x.page}` }), x.snippet ? " — " + x.snippet : ""))));
    } else if ((c.tool === "ocr_region" || c.tool === "crop_region") && c.image_id) {
      li.append(h("b", { text: c.tool === "ocr_region" ? "re-read" : "crop" }), " ", h("a", { href: "#/image/" + enc(c.image_id) + (c.bbox ? "?hl=" + c.bbox.map((v) => fmt(v)).join(",") : ""), text: c.image_id.slice(0, 12) + "…" }), " " + boxText(c.bbox), ms);
      if (c.bbox) li.appendChild(h("img", { class: "crop", src: imgUrl(c.image_id, "crop.png", { bbox: c.bbox.join(","), scale: 1 }), alt: "region " + boxText(c.bbox), loading: "lazy" }));
      if (c.text) li.appendChild(h("pre", { class: "ocr-text", text: c.text }));
    } else {
      li.append(h("b", { text: c.tool }), c.image_id ? " " + c.image_id.slice(0, 12) + "…" : "", ms);
    }
    if (c.error) li.appendChild(h("p", { class: "error", text: c.error }));
    return li;
  }

  function pad(b) {
    const lh = Math.max(10, b[3] - b[1]);
    return [Math.max(0, b[0] - 1.2 * lh), Math.max(0, b[1] - 0.6 * lh), b[2] + 1.2 * lh, b[3] + 0.6 * lh];
  }

  function answerPanel(result, jobId) {
    const a = result.answer;
    const ch = a.checks;
    const cites = a.citations.map((c, i) => {
      const page = result.pages[c.image_id] || null;
      const open = "#/image/" + enc(c.image_id) + (c.bbox ? "?hl=" + c.bbox.map((v) => fmt(v)).join(",") : "");
      return h("li", { class: "citation", dataset: { imageId: c.image_id } },
        h("p", {}, h("b", { text: `[${i + 1}] ` }), h("a", { href: open, text: `${(page && page.file) || c.path.split("/").pop()} p${c.page}` }),
          h("span", { class: "muted", text: ` ${c.kind === "seal" ? "seal " : c.kind === "linked" ? `linked (${c.why}) ` : ""}${boxText(c.bbox)}` })),
        h("blockquote", { class: "snippet", text: c.snippet }),
        h("div", { class: "cite-figs" },
          page ? h("a", { href: open, title: "the citation on its page" }, outlined(imgUrl(c.image_id, "thumb.png", { side: 384 }), page.width, page.height, [c.bbox], "cite-page")) : null,
          c.bbox ? h("img", { class: "crop cite-crop", src: imgUrl(c.image_id, "crop.png", { bbox: pad(c.bbox).map((v) => fmt(v, 1)).join(","), scale: 2 }), alt: "cited region " + (i + 1) }) : null));
    });
    return h("section", { class: "answer", id: "answer" },
      h("h2", { text: "Answer" }),
      h("p", { class: "answer-text", id: "answer-text", text: a.answer }),
      h("p", { class: "muted small", id: "checks", text: `${a.mode} · self-check ${ch.passed ? "passed" : "FAILED"} · ${ch.claims_passed}/${ch.claims_total} claims kept · ${ch.citations_passed}/${ch.citations_checked} citations verified · ${ch.retries} retries` }),
      h("p", { class: "actions" },
        h("a", { class: "button", id: "export-md", href: `/api/ask/${enc(jobId)}/export.md`, download: "imgrag-answer.md", text: "Export Markdown" }),
        h("a", { class: "button", id: "export-pdf", href: `/api/ask/${enc(jobId)}/export.pdf`, download: "imgrag-answer.pdf", text: "Export PDF" })),
      a.citations.length ? h("ol", { class: "citations", id: "citations" }, cites) : null);
  }

  // -- collection -------------------------------------------------------------------------------
  function bars(title, counts, id) {
    const entries = Object.entries(counts || {});
    const max = Math.max(1, ...entries.map((e) => e[1]));
    const rows = entries.map(([k, v]) => {
      const fill = h("span", { class: "fill" });
      fill.style.width = Math.round((100 * v) / max) + "%";
      return h("tr", {}, h("th", { text: k.replace(/_/g, " ") }), h("td", { class: "bar" }, fill), h("td", { class: "num", text: String(v) }));
    });
    return h("section", { class: "chart", id }, h("h3", { text: title }), entries.length ? h("table", { class: "bars" }, h("tbody", {}, rows)) : h("p", { class: "muted", text: "none" }));
  }

  async function collectionView(m) {
    const c = await api("/api/collection");
    m.appendChild(h("h2", { text: "Collection" }));
    m.appendChild(dl([["images", c.images], ["documents", c.documents], ["regions", c.regions], ["index version", c.version ?? "—"], ["backend", c.backend],
      ["soft-deleted", c.deleted]]));
    if (c.models) m.appendChild(h("details", { class: "models" }, h("summary", { text: "Models the index was built with" }), dl(Object.entries(c.models))));
    const years = Object.fromEntries(Object.entries(c.by_year || {}).sort());
    m.appendChild(h("div", { class: "charts" }, bars("By quality class", c.by_quality, "by-quality"), bars("By format", c.by_format, "by-format"), bars("By year mentioned", years, "by-year")));
    if (c.operator) {
      const msg = h("p", { class: "hint", id: "rollback-status" });
      m.appendChild(h("h2", { text: "Index versions" }));
      m.appendChild(h("table", { class: "versions", id: "versions" },
        h("thead", {}, h("tr", {}, ["version", "time", "operation", "summary", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, (c.versions || []).map((v, i) => h("tr", {},
          h("td", { text: String(v.version) }), h("td", { text: v.time.replace("T", " ").slice(0, 19) }), h("td", { text: v.op }),
          h("td", { text: Object.entries(v.summary).map(([k, x]) => `${k} ${x}`).join(", ") }),
          h("td", {}, i === 0 ? h("span", { class: "muted", text: "current" }) : h("button", { type: "button", class: "rollback", dataset: { version: String(v.version) }, text: "Roll back to this", onclick: async () => {
            if (!confirm(`Roll the index back to version ${v.version}? (It is recorded as a new version, so it can be undone.)`)) return;
            try { const r = await post("/api/rollback", { version: v.version }); toast(`Rolled back: now version ${r.version}`); render(); } catch (e) { clear(msg).appendChild(errorBox(e)); }
          } })))))));
      m.appendChild(msg);
      m.appendChild(h("h2", { text: "Evaluation charts" }));
      if (!c.charts || !c.charts.length) m.appendChild(h("p", { class: "muted", text: `No charts in ${c.eval_dir || "the eval folder"} yet: run \`imgrag eval\`.` }));
      else m.appendChild(h("div", { class: "eval-charts", id: "eval-charts" }, c.charts.map((ch) =>
        h("figure", {}, h("img", { src: "/api/eval/" + enc(ch.name), alt: ch.name, loading: "lazy" }), h("figcaption", { text: `${ch.name} · ${ch.modified}` })))));
    }
  }

  // -- start ------------------------------------------------------------------------------------
  async function start() {
    try {
      state.session = await api("/api/session");
    } catch (e) {
      clear(main()).appendChild(errorBox(e));
      return;
    }
    const s = state.session;
    const role = s.operator ? (s.principal === "operator" ? "" : " (operator)") : s.groups.length ? ` (${s.groups.join(", ")})` : "";
    document.getElementById("who").textContent = s.principal + role;
    document.getElementById("logout-csrf").value = s.csrf;
    if (!s.can_ask) document.querySelector('[data-nav="ask"]').classList.add("hidden");
    window.addEventListener("hashchange", render);
    let back = null;
    try { back = sessionStorage.getItem(RETURN_TO); sessionStorage.removeItem(RETURN_TO); } catch (_) { back = null; }
    if (back && back.startsWith("#/") && !location.hash) history.replaceState(null, "", back);
    render();
  }
  document.addEventListener("DOMContentLoaded", start);
})();
