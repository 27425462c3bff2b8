// chunkserve dashboard: polls /dashboard/stats every second and streams a job through /v1/process/stream.
// No framework and no build step. The key or token lives in this closure only: never in storage or the URL.
"use strict";
(function () {
  const POLL_MS = 1000;
  let token = null;
  let polling = false;
  const $ = (id) => document.getElementById(id);
  // For people debugging and for the browser tests: what the page did, in order.
  const trace = { polls: 0, highlights: [], resultEvents: 0 };
  window.chunkserveDashboard = trace;

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) td.className = cls;
    return td;
  }

  function pct(x) { return x === null || x === undefined ? null : (x * 100).toFixed(1) + "%"; }

  function histogram(counts) {
    const box = document.createElement("div");
    box.className = "hist";
    const entries = Object.entries(counts || {});
    const top = Math.max(1, ...entries.map((e) => e[1]));
    for (const [bound, n] of entries) {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.height = Math.max(2, Math.round((n / top) * 34)) + "px";
      bar.title = "≤ " + bound + ": " + n + " batches";
      const label = document.createElement("span");
      label.textContent = bound;
      bar.appendChild(label);
      box.appendChild(bar);
    }
    return box;
  }

  function render(stats) {
    const models = Object.entries(stats.models);
    $("req-in-flight").textContent = stats.requests_in_flight;
    $("jobs-in-flight").textContent = stats.jobs_in_flight;
    $("queued").textContent = models.reduce((s, [, m]) => s + (m.queue_depth || 0), 0);
    $("batches").textContent = models.reduce((s, [, m]) => s + (m.batches || 0), 0);
    const mbody = $("models").tBodies[0];
    mbody.replaceChildren();
    for (const [id, m] of models) {
      const row = mbody.insertRow();
      row.dataset.model = id;
      cell(row, id);
      cell(row, m.queue_depth, "num queue");
      cell(row, m.batches || 0, "num batches");
      cell(row, m.inputs || 0, "num inputs");
      cell(row, m.mean_batch, "num");
      cell(row, pct(m.fill_ratio), "num");
      cell(row, pct(m.padding_share), "num");
      row.insertCell().appendChild(histogram(m.batch_sizes));
    }
    const rbody = $("routes").tBodies[0];
    rbody.replaceChildren();
    for (const r of stats.routes) {
      const row = rbody.insertRow();
      cell(row, r.method + " " + r.route);
      cell(row, r.count, "num");
      cell(row, r.p50_ms, "num");
      cell(row, r.p99_ms, "num");
    }
    const hbody = $("remote").tBodies[0];
    hbody.replaceChildren();
    for (const [host, outcomes] of Object.entries(stats.remote)) {
      const row = hbody.insertRow();
      cell(row, host);
      const td = row.insertCell();
      for (const [outcome, n] of Object.entries(outcomes)) {
        const tag = document.createElement("span");
        tag.className = "outcome " + outcome;
        tag.textContent = outcome + " " + n;
        td.appendChild(tag);
      }
    }
    renderTargets(stats.models_served || []);
  }

  function renderTargets(served) {
    const box = $("targets");
    const have = Array.from(box.querySelectorAll("input")).map((i) => i.value).join(",");
    if (have === served.map((m) => m.id).join(",")) return;
    box.replaceChildren();
    served.forEach((m, i) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = m.id;
      input.checked = i === 0;
      label.append(input, " " + m.id + " (" + m.task + ")");
      box.appendChild(label);
    });
  }

  function needKey(message) {
    $("auth").hidden = false;
    $("status").textContent = message;
  }

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const res = await fetch("/dashboard/stats", { headers: headers(), cache: "no-store" });
      if (res.status === 401) { needKey(token ? "the key was refused" : "needs a key"); return; }
      if (!res.ok) { $("status").textContent = "stats: HTTP " + res.status; return; }
      render(await res.json());
      trace.polls += 1;
      $("auth").hidden = true;
      $("status").textContent = "live · " + new Date().toLocaleTimeString();
    } catch (err) {
      $("status").textContent = "server unreachable (" + err.message + ")";
    } finally {
      polling = false;
    }
  }

  // --- the long-text box -----------------------------------------------------------------------------
  let marks = [];  // {start, end, cls}, one per chunk result received

  function paint(text) {
    const box = $("highlight");
    box.replaceChildren();
    // The server's start/end count code points; a JavaScript string's indices are UTF-16 units, which differ
    // past the first emoji. Results carry no text (the request leaves include_text off): slice it here.
    const points = Array.from(text);
    const cut = (a, b) => points.slice(a, b).join("");
    const sorted = marks.slice().sort((a, b) => a.start - b.start || a.end - b.end);
    let at = 0;
    for (const m of sorted) {
      if (m.start < at) continue;  // broadcast: a chunk already painted
      if (m.start > at) box.append(span(cut(at, m.start), "pending"));
      const s = span(cut(m.start, m.end), m.cls);
      s.dataset.start = m.start;
      s.dataset.end = m.end;
      box.append(s);
      at = m.end;
    }
    if (at < points.length) box.append(span(cut(at), "pending"));
  }

  function span(text, cls) {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function onResult(text, r) {
    trace.resultEvents += 1;
    // Neighbouring chunks alternate in shade so their boundaries show.
    marks.push({ start: r.start, end: r.end, cls: r.success ? "done c" + (r.index % 2) : "failed" });
    paint(text);
    trace.highlights.push({ index: r.index, start: r.start, end: r.end, success: r.success,
      painted: $("highlight").querySelectorAll(".done, .failed").length });
    const li = document.createElement("li");
    li.className = r.success ? "ok" : "failed";
    li.textContent = "chunk " + r.index + " → " + r.target + ": " +
      (r.success ? "ok" : r.error.type + " (" + r.error.message + ")") + ", " + r.latency_ms + " ms";
    $("results").appendChild(li);
  }

  function body(text) {
    const targets = Array.from($("targets").querySelectorAll("input:checked")).map((i) => ({ model: i.value }));
    const url = $("remote-url").value.trim();
    if (url) targets.push({ url: url });
    return { text: text, chunking: $("chunking").value, chunk_size: Number($("chunk-size").value) || 200, targets: targets };
  }

  async function run() {
    const text = $("text").value;
    if (!text.trim()) { $("job-status").textContent = "paste a text first"; return; }
    marks = [];
    $("results").replaceChildren();
    paint(text);
    $("job-status").textContent = "sending…";
    const res = await fetch("/v1/process/stream", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", "Accept": "text/event-stream" }),
      body: JSON.stringify(body(text)),
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({}));
      $("job-status").textContent = "HTTP " + res.status + ": " + ((err.error && err.error.message) || res.statusText);
      if (res.status === 401) needKey("needs a key");
      return;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;  // keep-alive comment
        const payload = JSON.parse(data.join("\n"));
        if (event === "result") onResult(text, payload);
        else if (event === "progress") $("job-status").textContent =
          payload.done + " of " + (payload.done + payload.queued) + " done, " + payload.failed + " failed";
        else if (event === "summary") $("job-status").textContent =
          "finished: " + payload.successful + " ok, " + payload.failed + " failed, " + payload.elapsed_ms + " ms";
        else if (event === "error") $("job-status").textContent = "job failed: " + payload.message;
      }
    }
  }

  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim() || null;
    $("token").value = "";
    poll();
  });
  $("run").addEventListener("click", () => {
    run().catch((err) => { $("job-status").textContent = "error: " + err.message; });
  });
  poll();
  setInterval(poll, POLL_MS);
})();
