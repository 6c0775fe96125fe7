// The parley dashboard. Everything comes over one event stream,
// GET /v1/ui/events, with this page's session cookie; a task's sequence
// diagram from GET /v1/tasks/{id}. No libraries, nothing from elsewhere.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 50; // task rows drawn at a time, so 1,000 tasks draw fast
  const $ = (id) => document.getElementById(id);
  const tasks = new Map(); // by ID: UITask
  const st = { peers: [], topics: [], status: null, stats: null, approvals: [], workflows: [], audit: [],
    page: 0, filter: "", selected: "", followed: "", drawn: "", marks: 0, dirty: false };

  function short(s, n) { s = String(s || ""); n = n || 12; return s.length > n ? s.slice(0, n) + "…" : s; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function row(cells, attrs) {
    const tr = el("tr", attrs);
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", {}, c));
    return tr;
  }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  // ms of a Go duration string ("2.01s", "212ms", "1m30s").
  function ms(d) {
    if (typeof d !== "string") return 0;
    const unit = { h: 3600e3, m: 60e3, s: 1e3, ms: 1, "µs": 1e-3, "us": 1e-3, ns: 1e-6 };
    let total = 0;
    for (const m of d.matchAll(/([0-9.]+)(h|ms|m|s|µs|us|ns)/g)) total += parseFloat(m[1]) * unit[m[2]];
    return total;
  }
  function time(t) { const d = new Date(t); return isNaN(d) ? "" : d.toLocaleTimeString(); }

  // --- the stream ---
  function connect() {
    const es = new EventSource("/v1/ui/events");
    es.addEventListener("open", () => { $("live").textContent = "live"; $("live").className = "badge on"; });
    es.addEventListener("error", () => {
      $("live").textContent = es.readyState === EventSource.CLOSED ? "session ended: run parley ui" : "reconnecting";
      $("live").className = "badge off";
    });
    es.addEventListener("tasks", (e) => {
      const ev = JSON.parse(e.data);
      if (ev.full) tasks.clear();
      for (const t of ev.tasks || []) tasks.set(t.task, t);
      for (const id of ev.gone || []) tasks.delete(id);
      changed();
    });
    for (const type of ["peers", "topics", "approvals", "workflows", "audit"]) {
      es.addEventListener(type, (e) => { st[type] = JSON.parse(e.data)[type] || []; changed(); });
    }
    for (const type of ["status", "stats"]) {
      es.addEventListener(type, (e) => { st[type] = JSON.parse(e.data)[type]; changed(); });
    }
  }
  function changed() {
    if (st.dirty) return;
    st.dirty = true;
    requestAnimationFrame(render);
  }

  // --- drawing ---
  function render() {
    st.dirty = false;
    renderNode();
    renderPeers();
    renderAudit();
    renderWorkflows();
    renderTasks();
    renderCharts();
    follow();
    if (st.marks < 50 && tasks.size !== st.lastCount) { // for tests and the curious: when the list showed how many
      st.lastCount = tasks.size;
      st.marks++;
      performance.mark("parley-tasks", { detail: tasks.size });
    }
  }
  function renderNode() {
    const s = st.status;
    if (!s) return;
    $("node").textContent = s.peer;
    const up = Math.round((Date.now() - new Date(s.started)) / 1000);
    $("meta").textContent = `version ${s.version} · ${s.reachability} · up ${up}s · ${s.tasks_in_flight} in flight · ` +
      (s.health && s.health.ready ? "ready" : "not ready: " + ((s.health && s.health.reasons) || []).join("; "));
    $("agents-count").textContent = s.agents.length;
    fill($("agents"), s.agents.map((a) => row([a.name, a.kind + (a.connected === false ? " (disconnected)" : ""), (a.capabilities || []).join(", ")])));
  }
  function renderPeers() {
    $("peers-count").textContent = st.peers.length;
    fill($("peers"), st.peers.map((p) => row([el("td", { class: "mono", title: p.id }, short(p.id, 20)), p.source,
      p.connection + (p.via ? " via " + short(p.via) : "") + (p.hole_punched ? ", hole punched" : ""), p.direction], { "data-peer": p.id })));
    $("topics-count").textContent = st.topics.length;
    fill($("topics"), st.topics.map((t) => row([t.capability, String(t.peers)])));
    $("approvals-count").textContent = st.approvals.length;
    fill($("approvals"), st.approvals.map((a) => el("li", {}, `${a.id}: ${a.stage} of ${a.capability} at ${a.price} (rule ${a.rule}); answer with parley approvals`)));
  }
  function renderWorkflows() {
    $("workflows-count").textContent = st.workflows.length;
    fill($("workflows"), st.workflows.map((w) => row([new Date(w.created).toISOString().replace("T", " ").replace("Z", ""),
      el("td", { class: "mono", title: w.id }, short(w.id, 16)), w.name || "", el("td", { class: "st-" + w.state }, w.state),
      `${w.done} of ${w.steps}`, w.error || ""], { "data-workflow": w.id })));
  }
  function renderAudit() {
    $("audit-count").textContent = st.audit.length;
    fill($("audit"), st.audit.map((r) => row([new Date(r.time).toISOString().replace("T", " ").replace("Z", ""), String(r.seq), r.kind,
      el("td", { class: "mono" }, short(r.task, 16)), r.agent || "", r.rationale || ""], { "data-seq": r.seq })));
  }
  // A duration as the page shows it: Go's, rounded to the millisecond.
  function dur(d) {
    const v = ms(d);
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
  }
  function sorted() {
    const f = st.filter;
    const out = [];
    for (const t of tasks.values()) {
      if (f && !(t.task + " " + t.capability + " " + t.state + " " + t.role + " " + (t.agent_name || "") + " " + (t.peer_name || "")).toLowerCase().includes(f)) continue;
      out.push(t);
    }
    out.sort((a, b) => (a.started < b.started ? 1 : a.started > b.started ? -1 : 0));
    return out;
  }
  function renderTasks() {
    const list = sorted();
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    $("tasks-count").textContent = tasks.size;
    $("page").textContent = `page ${st.page + 1} of ${pages}` + (st.filter ? ` (${list.length} match)` : "");
    const rows = list.slice(st.page * PAGE, st.page * PAGE + PAGE).map((t) => row([time(t.started),
      el("td", { class: "mono" }, t.task), t.role, t.capability, el("td", { class: "st-" + t.state }, t.state),
      t.peer_name || "", String(t.bids || ""), t.timings ? dur(t.timings.total) : ""],
      { "data-task": t.task, class: t.task === st.drawn ? "sel" : "" }));
    fill($("tasks"), rows);
  }
  // follow picks the task to draw: the one clicked, else the newest live
  // requester task, else the newest requester task.
  function follow() {
    let id = st.selected;
    if (!id || !tasks.has(id)) {
      let live = null, any = null;
      for (const t of tasks.values()) {
        if (t.role !== "requester") continue;
        if (!any || t.started > any.started) any = t;
        if (!["completed", "failed", "canceled"].includes(t.state) && (!live || t.started > live.started)) live = t;
      }
      id = (live || any || {}).task;
    }
    if (!id) return;
    const t = tasks.get(id);
    const key = id + "@" + t.updated;
    if (key === st.followed) return;
    st.followed = key;
    fetch("/v1/tasks/" + encodeURIComponent(id), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((info) => { if (info) drawSequence(info); })
      .catch(() => {});
  }

  // --- the sequence diagram ---
  // The frames of one negotiation, rebuilt from its history and bids.
  function frames(info) {
    // A running task has no outcome yet: its bids so far draw it.
    const o = info.outcome || { bids: info.bids || [] };
    const me = info.agent_name || short(info.agent, 16);
    const lifelines = [{ key: "req", label: (info.role === "requester" ? me : info.peer_name || short(info.peer, 16)) + " (requester)" }];
    const arrows = [];
    const states = info.history || [];
    const has = (s) => states.some((h) => h.state === s);
    // The winner's questions: each input-required step, then its answer.
    const asks = (from, to) => {
      states.forEach((h, i) => {
        if (h.state !== "input-required") return;
        arrows.push({ from, to, label: (h.note || "ask").replace(/^asked: /, "ask: ") });
        if (states.slice(i + 1).some((n) => n.state === "working" && /^answer/.test(n.note || ""))) arrows.push({ from: to, to: from, label: "answer" });
      });
    };
    if (info.role === "contractor") {
      lifelines.push({ key: "me", label: me + " (this node's bidder)" });
      arrows.push({ from: "req", to: "me", label: "call for proposals" });
      arrows.push({ from: "me", to: "req", label: "propose" });
      if (has("working") || has("completed")) {
        arrows.push({ from: "req", to: "me", label: "accept" });
        arrows.push({ from: "me", to: "req", label: "commit" });
        arrows.push({ from: "req", to: "me", label: "task (input)" });
        asks("me", "req");
        arrows.push({ from: "me", to: "req", label: "progress", dash: true });
      }
      if (info.state === "completed") arrows.push({ from: "me", to: "req", label: "result" });
      else if (info.state === "failed" || info.state === "canceled") arrows.push({ from: "me", to: "req", label: info.state, neg: true });
      return { lifelines, arrows };
    }
    const bids = o.bids || [];
    const keyOf = (b) => "b:" + b.agent;
    for (const b of bids) {
      if (!lifelines.some((l) => l.key === keyOf(b))) lifelines.push({ key: keyOf(b), label: (b.name || short(b.agent, 16)) });
    }
    const calls = Math.max(o.calls || 1, ...bids.map((b) => b.call || 1));
    if (!bids.length) lifelines.push({ key: "topic", label: "topic " + info.capability });
    for (let c = 1; c <= calls; c++) {
      const inCall = bids.filter((b) => (b.call || 1) === c);
      if (!inCall.length) { arrows.push({ from: "req", to: bids.length ? lifelines[1].key : "topic", label: `call for proposals #${c} (no bids)`, dash: true }); continue; }
      for (const b of inCall) arrows.push({ from: "req", to: keyOf(b), label: `call for proposals #${c}` });
      for (const b of inCall) {
        if (b.status === "refused") arrows.push({ from: keyOf(b), to: "req", label: "refuse" + (b.note ? ": " + b.note : ""), neg: true });
        else {
          // With counter-offers the first proposal is the first round's
          // countered bid; each round is a counter and its answer.
          const rounds = b.rounds || [];
          const first = rounds.length && rounds[0].counter.bid ? rounds[0].counter.bid : b;
          arrows.push({ from: keyOf(b), to: "req", label: `propose ${first.price} in ${first.eta}` + (b.status === "late" ? " (late)" : "") });
          for (const rd of rounds) {
            arrows.push({ from: "req", to: keyOf(b), label: `counter ${rd.counter.price} in ${rd.counter.eta}` + (rd.counter.terms ? ": " + rd.counter.terms : "") });
            const bad = rd.reply === "refused" || rd.reply === "silent" || rd.reply === "failed";
            arrows.push({ from: keyOf(b), to: "req", label: rd.reply + (rd.reply === "revised" ? ` to ${rd.bid.price} in ${rd.bid.eta}` : ""), neg: bad, dash: rd.reply === "silent" });
          }
        }
      }
      const ranked = inCall.filter((b) => b.status !== "refused").sort((a, b) => (a.rank || 99) - (b.rank || 99));
      for (const b of ranked) {
        const k = keyOf(b);
        switch (b.status) {
          case "rejected": case "over_budget": case "late":
            arrows.push({ from: "req", to: k, label: "reject" + (b.status !== "rejected" ? " (" + b.status.replace("_", " ") + ")" : ""), neg: true }); break;
          case "standby":
            arrows.push({ from: "req", to: k, label: "standby", dash: true }); break;
          case "declined":
            arrows.push({ from: "req", to: k, label: "accept" });
            arrows.push({ from: k, to: "req", label: "decline", neg: true }); break;
          case "silent":
            arrows.push({ from: "req", to: k, label: "accept" });
            arrows.push({ from: k, to: "req", label: "(silent)", neg: true, dash: true }); break;
          case "awarded": case "completed": case "failed":
            arrows.push({ from: "req", to: k, label: "accept" + (o.rationale && b.agent === o.winner ? ": " + o.rationale : "") });
            arrows.push({ from: k, to: "req", label: "commit" });
            arrows.push({ from: "req", to: k, label: "task (input)" });
            if (b.status === "completed" || b.status === "awarded") asks(k, "req");
            if (b.status !== "awarded" || info.state === "working") arrows.push({ from: k, to: "req", label: "progress", dash: true });
            if (b.status === "completed") arrows.push({ from: k, to: "req", label: "result" });
            if (b.status === "failed") arrows.push({ from: k, to: "req", label: "failure" + (b.note ? ": " + b.note : ""), neg: true });
            break;
        }
      }
    }
    if (!info.outcome && !bids.length) { // still running, no bid yet
      arrows.push({ from: "req", to: "topic", label: "call for proposals (" + info.state + ")" });
    }
    return { lifelines, arrows };
  }
  function drawSequence(info) {
    const { lifelines, arrows } = frames(info);
    const box = $("seq");
    const colW = 190, top = 44, step = 30, left = 120;
    const w = left + colW * lifelines.length, h = top + step * (arrows.length + 1) + 10;
    box.setAttribute("width", w);
    box.setAttribute("height", h);
    box.setAttribute("viewBox", `0 0 ${w} ${h}`);
    box.setAttribute("data-task", info.task);
    const x = {};
    const kids = [svg("defs", {}), svg("title", {}, "negotiation " + info.task)];
    const marker = svg("marker", { id: "head", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#1d232b" }));
    kids[0].appendChild(marker);
    lifelines.forEach((l, i) => {
      const cx = left + colW * i + colW / 2;
      x[l.key] = cx;
      const g = svg("g", { class: "head lifeline", "data-key": l.key });
      g.appendChild(svg("rect", { x: cx - colW / 2 + 8, y: 6, width: colW - 16, height: 24, rx: 4 }));
      g.appendChild(svg("text", { x: cx, y: 22, "text-anchor": "middle" }, short(l.label, 28)));
      kids.push(g, svg("line", { class: "life", x1: cx, y1: 30, x2: cx, y2: h - 6 }));
    });
    // The task's states down the left, at the height of the arrows.
    (info.history || []).forEach((hst, i) => {
      kids.push(svg("text", { class: "state", x: 4, y: top + 8 + i * 14 }, `${hst.state} ${time(hst.at)}`));
    });
    arrows.forEach((a, i) => {
      const y = top + step * (i + 1);
      const x1 = x[a.from], x2 = x[a.to];
      if (x1 === undefined || x2 === undefined) return;
      const g = svg("g", { class: "arrow" + (a.neg ? " neg" : "") + (a.dash ? " dash" : ""), "data-label": a.label });
      g.appendChild(svg("line", { x1, y1: y, x2: x2 + (x2 > x1 ? -2 : 2), y2: y, "marker-end": "url(#head)" }));
      g.appendChild(svg("text", { x: (x1 + x2) / 2, y: y - 5, "text-anchor": "middle" }, short(a.label, 44)));
      kids.push(g);
    });
    box.replaceChildren(...kids);
    st.drawn = info.task;
    $("seq-title").textContent = `${info.task} · ${info.capability} · ${info.state}`;
    const o = info.outcome;
    $("rationale").textContent = o ? (o.winner_name ? `Winner ${o.winner_name}: ${o.rationale || "(no rationale given)"}` : o.reason || "") : "";
    for (const tr of $("tasks").children) tr.classList.toggle("sel", tr.dataset.task === info.task);
  }

  // --- charts (SVG, by hand) ---
  function bars(id, items, color) {
    const box = $(id);
    const W = +box.getAttribute("width"), H = +box.getAttribute("height");
    const pad = 24, top = 14, bottom = 30;
    const maxV = Math.max(1, ...items.map((i) => i.v));
    const bw = (W - pad - 4) / Math.max(1, items.length);
    const kids = [svg("line", { class: "axis", x1: pad, y1: H - bottom, x2: W, y2: H - bottom })];
    items.forEach((it, i) => {
      const bh = (H - bottom - top) * it.v / maxV;
      const bx = pad + i * bw + 2;
      const r = svg("rect", { x: bx, y: H - bottom - bh, width: Math.max(1, bw - 4), height: bh, fill: it.color || color });
      r.appendChild(svg("title", {}, `${it.label}: ${Math.round(it.v)}`));
      kids.push(r);
      if (items.length <= 12) {
        kids.push(svg("text", { x: bx + bw / 2 - 2, y: H - bottom + 12, "text-anchor": "middle" }, it.label));
        kids.push(svg("text", { x: bx + bw / 2 - 2, y: H - bottom - bh - 3, "text-anchor": "middle" }, String(Math.round(it.v))));
      }
    });
    kids.push(svg("text", { x: 2, y: top }, String(Math.round(maxV))));
    box.replaceChildren(...kids);
  }
  function renderCharts() {
    const colors = { completed: "#1a7f37", failed: "#cf222e", canceled: "#8c959f", working: "#9a6700", "input-required": "#0969da", negotiating: "#bf8700", submitted: "#d4a72c", awaiting_approval: "#8250df" };
    const counts = {};
    const done = [];
    for (const t of tasks.values()) {
      counts[t.state] = (counts[t.state] || 0) + 1;
      if (t.role === "requester" && t.state === "completed" && t.timings) done.push(t);
    }
    bars("c-states", Object.keys(counts).sort().map((k) => ({ label: k.replace("awaiting_approval", "approval"), v: counts[k], color: colors[k] })), "#1f6feb");
    done.sort((a, b) => (a.started < b.started ? -1 : 1));
    bars("c-latency", done.slice(-60).map((t) => ({ label: t.task.slice(0, 4), v: ms(t.timings.total) })), "#1f6feb");
    const s = st.stats;
    if (s) {
      const dropped = Object.values(s.dropped || {}).reduce((a, b) => a + b, 0);
      const lost = Object.values(s.lost || {}).reduce((a, b) => a + b, 0);
      bars("c-intents", [{ label: "published", v: s.published }, { label: "received", v: s.received },
        { label: "dropped", v: dropped, color: "#cf222e" }, { label: "lost", v: lost, color: "#8c959f" }, { label: "not relayed", v: s.not_relayed, color: "#8c959f" }], "#1f6feb");
    }
  }

  // --- input ---
  document.addEventListener("DOMContentLoaded", () => {
    $("tasks").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-task]");
      if (!tr) return;
      st.selected = tr.dataset.task;
      st.followed = "";
      follow();
    });
    $("filter").addEventListener("input", (e) => { st.filter = e.target.value.trim().toLowerCase(); st.page = 0; changed(); });
    $("prev").addEventListener("click", () => { st.page = Math.max(0, st.page - 1); changed(); });
    $("next").addEventListener("click", () => { st.page++; changed(); });
    connect();
    setInterval(renderNode, 1000); // the uptime
  });
})();
