// remo ui, a job's page: its status, limits against usage (sampled every second while
// the page is open), actions, and its output: the last lines first, earlier ones on
// demand (scroll to the top or the button), the rest live as it is written.
"use strict";

(() => {
  const { get, post, size, duration, cores, when, clock, el } = remo;
  const params = new URLSearchParams(location.search);
  const server = params.get("server") || "";
  const id = params.get("id") || "";
  const q = `server=${encodeURIComponent(server)}&id=${encodeURIComponent(id)}`;
  const MAX_LINES = 20000;
  const errorBox = document.getElementById("error");
  const log = document.getElementById("log");
  const logState = document.getElementById("log-state");
  const earlierButton = document.getElementById("earlier");
  let job = null;
  const samples = [];

  document.getElementById("title").textContent = `Job ${id} on ${server}`;
  document.title = `remo: ${id} on ${server}`;

  // -- status and usage ------------------------------------------------------------

  function fact(list, name, value, mono) {
    list.push(el("dt", {}, name), el("dd", { class: mono ? "mono" : null }, value));
  }

  function showStatus(j) {
    job = j;
    const list = [];
    fact(list, "State", el("span", { class: `state-${j.state}`, id: "state" }, j.state + (j.oom ? " (out of memory)" : "")));
    if (j.name) fact(list, "Name", j.name);
    fact(list, "Command", j.command, true);
    if (Object.keys(j.labels).length) fact(list, "Labels", Object.entries(j.labels).map(([k, v]) => `${k}=${v}`).join(" "));
    fact(list, "Owner", j.owner);
    fact(list, "Started", when(j.started_at));
    if (j.ended_at) fact(list, "Ended", when(j.ended_at));
    fact(list, "Duration", duration((j.ended_at || Date.now() / 1000) - j.started_at));
    fact(list, "Exit", j.exit);
    if (j.reason) fact(list, "Reason", j.reason);
    if (j.cwd) fact(list, "Directory", j.cwd, true);
    if (j.isolation.length) fact(list, "Isolation", j.isolation.join(", "));
    if (j.schedule_id) fact(list, "Schedule", j.schedule_id);
    if (j.output_dropped_bytes) fact(list, "Output dropped", size(j.output_dropped_bytes));
    document.getElementById("facts").replaceChildren(...list);
    const running = j.state === "running";
    document.getElementById("stop").disabled = !running;
    document.getElementById("kill").disabled = !running;
    showUsage(j);
  }

  function showUsage(j) {
    const live = j.live || {};
    const lim = j.limits;
    const total = live.cpu_seconds ?? j.cpu_seconds;
    const rows = [
      ["CPU (cores)", cores(live.cpu_cores), total === null || total === undefined ? "-" : `${total.toFixed(1)} s`, lim.cpu ? cores(lim.cpu) : "none"],
      ["Memory", size(live.memory_bytes), size(live.peak_memory_bytes ?? j.peak_memory_bytes), lim.memory ? size(lim.memory) : "none"],
      ["IO read", live.io_read_bps !== undefined && live.io_read_bps !== null ? `${size(Math.round(live.io_read_bps))}/s` : "-", "", lim.io_read_bps ? `${size(lim.io_read_bps)}/s` : "none"],
      ["IO write", live.io_write_bps !== undefined && live.io_write_bps !== null ? `${size(Math.round(live.io_write_bps))}/s` : "-", "", lim.io_write_bps ? `${size(lim.io_write_bps)}/s` : "none"],
      ["Processes", live.processes ?? "-", "", lim.pids ?? "none"],
      ["Output", "", "", lim.output_bytes ? size(lim.output_bytes) : "none"],
    ];
    document.querySelector("#usage tbody").replaceChildren(...rows.map((r) => el("tr", {},
      el("th", { scope: "row" }, r[0]), el("td", { class: "num" }, r[1]), el("td", { class: "num" }, r[2]), el("td", { class: "num" }, r[3]))));
    if (j.live) {
      samples.push({ t: Date.now() / 1000, cpu: j.live.cpu_cores, mem: j.live.memory_bytes });
      if (samples.length > 3600) samples.shift();
    }
    chart("chart-cpu", "cap-cpu", samples.map((s) => [s.t, s.cpu]), lim.cpu, cores, "CPU (cores)");
    chart("chart-mem", "cap-mem", samples.map((s) => [s.t, s.mem]), lim.memory, size, "Memory");
  }

  function chart(svgId, capId, points, limit, fmt, name) {
    const svg = document.getElementById(svgId);
    const ns = "http://www.w3.org/2000/svg";
    const pts = points.filter((p) => p[1] !== null && p[1] !== undefined);
    const top = Math.max(limit || 0, ...pts.map((p) => p[1]), 1e-9) * 1.1;
    const t0 = pts.length ? pts[0][0] : 0;
    const span = Math.max(10, pts.length ? pts[pts.length - 1][0] - t0 : 0);
    const x = (t) => ((t - t0) / span) * 300;
    const y = (v) => 78 - (v / top) * 74;
    const nodes = [];
    if (limit) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("class", "limit");
      line.setAttribute("x1", "0"); line.setAttribute("x2", "300");
      line.setAttribute("y1", y(limit)); line.setAttribute("y2", y(limit));
      nodes.push(line);
    }
    if (pts.length) {
      const poly = document.createElementNS(ns, "polyline");
      poly.setAttribute("class", "use");
      poly.setAttribute("points", pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
      nodes.push(poly);
    }
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4"); label.setAttribute("y", "11");
    label.textContent = limit ? `limit ${fmt(limit)}` : "no limit";
    nodes.push(label);
    svg.replaceChildren(...nodes);
    const now = pts.length ? fmt(pts[pts.length - 1][1]) : "-";
    document.getElementById(capId).textContent = `${name}: ${now} now${limit ? `, limit ${fmt(limit)}` : ""}${pts.length ? `, ${pts.length} samples` : ""}`;
  }

  async function poll() {
    try {
      showStatus(await get(`/api/job?${q}`));
    } catch (e) {
      errorBox.textContent = e.message;
      return;
    }
    if (job.state === "running") setTimeout(poll, 1000);
  }

  // -- actions ---------------------------------------------------------------------

  const actionStatus = document.getElementById("action-status");
  async function act(button, url, body, done) {
    errorBox.textContent = ""; actionStatus.textContent = "";
    button.disabled = true;
    try {
      const got = await post(url, body);
      if (got.job) showStatus(got.job);
      actionStatus.textContent = done(got);
    } catch (e) {
      errorBox.textContent = e.message;
    } finally {
      button.disabled = job && job.state !== "running" && button.id !== "remove";
    }
  }
  document.getElementById("stop").addEventListener("click", (e) => act(e.target, "/api/stop",
    { server, id, grace: document.getElementById("grace").value }, (g) => `Stopped: ${g.job.state}, exit ${g.job.exit}.`));
  document.getElementById("kill").addEventListener("click", (e) => {
    const signal = document.getElementById("signal").value;
    act(e.target, "/api/kill", { server, id, signal }, () => `Sent SIG${signal}.`);
  });
  document.getElementById("remove").addEventListener("click", (e) => {
    // (not yet known to have ended, e.g. before the first status came: stop it first)
    const running = !job || job.state === "running";
    if (!confirm(running ? `Stop job ${id} and remove it with its output?` : `Remove job ${id} and its output?`)) return;
    act(e.target, "/api/remove", { server, id, stop: running }, () => "Removed.").then(() => {
      if (!errorBox.textContent) location.assign("/");
    });
  });

  // -- output ----------------------------------------------------------------------

  let earliest = 0;        // byte offset of the first line shown
  let open = null;         // the last line, while it has no newline yet
  const states = {};       // ANSI state per stream
  const encoder = new TextEncoder();

  function newLine(piece, offset) {
    const cls = piece.stream === "stderr" ? "line err" : "line out";
    const line = el("div", { class: cls, "data-offset": offset });
    line.append(el("span", { class: "ts" }, piece.time ? clock(piece.time) : ""));
    return line;
  }

  // Lines of `pieces` (in order) as elements; `carry` is the open line to continue.
  function build(pieces, carry, target) {
    let current = carry;
    for (const piece of pieces) {
      const state = states[piece.stream] || (states[piece.stream] = ansi.fresh());
      const parts = piece.text.split("\n");
      let offset = piece.offset;
      parts.forEach((part, i) => {
        if (i > 0) current = null;
        if (i === parts.length - 1 && part === "") return;
        if (current && current.dataset.stream !== piece.stream) current = null;
        if (!current) {
          current = newLine(piece, offset);
          current.dataset.stream = piece.stream;
          target.append(current);
        }
        let text = part.endsWith("\r") ? part.slice(0, -1) : part;
        const cr = text.lastIndexOf("\r");
        if (cr >= 0) {  // a carriage return rewrites the line (progress bars)
          while (current.childNodes.length > 1) current.lastChild.remove();
          text = text.slice(cr + 1);
        }
        ansi.render(current, text, state);
        offset += encoder.encode(part).length + 1;
      });
    }
    return current;
  }

  function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }

  function append(pieces) {
    const stick = document.getElementById("stick").checked && atBottom();
    const fragment = document.createDocumentFragment();
    const carry = open && open.isConnected ? open : null;
    open = build(pieces, carry, fragment);
    log.append(fragment);
    if (open && pieces.length && pieces[pieces.length - 1].text.endsWith("\n")) open = null;
    trim();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function trim() {
    let extra = log.childElementCount - MAX_LINES;
    while (extra > 0 && log.firstElementChild) { log.firstElementChild.remove(); extra -= 1; }
    if (log.childElementCount >= MAX_LINES) {
      earliest = Number(log.firstElementChild.dataset.offset);
      earlierButton.disabled = earliest === 0;
    }
  }

  let loading = false;
  async function loadEarlier() {
    if (loading || earliest === 0) return;
    loading = true;
    try {
      const win = await get(`/api/output?${q}&before=${earliest}`);
      const before = log.scrollHeight;
      const fragment = document.createDocumentFragment();
      const saved = Object.assign({}, states);
      for (const k of Object.keys(states)) delete states[k];
      build(win.pieces, null, fragment);
      Object.assign(states, saved);
      log.prepend(fragment);
      log.scrollTop += log.scrollHeight - before;
      earliest = win.start;
      earlierButton.disabled = earliest === 0;
      logState.textContent = earliest === 0 ? "from the start" : `from byte ${earliest}`;
    } catch (e) {
      errorBox.textContent = e.message;
    } finally {
      loading = false;
    }
  }
  earlierButton.addEventListener("click", loadEarlier);
  log.addEventListener("scroll", () => { if (log.scrollTop < 40) loadEarlier(); });

  function following(offset) {
    const source = new EventSource(`/api/follow?${q}&offset=${offset}`);
    logState.textContent = "connecting";
    source.addEventListener("open", () => { logState.textContent = "following"; });
    // A dropped connection: the browser reconnects and resumes at the last byte shown.
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) logState.textContent = "reconnecting";
    });
    source.addEventListener("output", (e) => append([JSON.parse(e.data)]));
    source.addEventListener("end", (e) => {
      source.close();
      showStatus(JSON.parse(e.data));
      logState.textContent = "the job has ended";
      log.dataset.ended = "1";
    });
    source.addEventListener("failure", (e) => {
      source.close();
      errorBox.textContent = JSON.parse(e.data).error;
      logState.textContent = "";
    });
  }

  for (const [box, cls] of [["show-ts", "show-ts"], ["show-err", "hide-err"], ["show-out", "hide-out"]]) {
    const input = document.getElementById(box);
    const sync = () => log.classList.toggle(cls, cls === "show-ts" ? input.checked : !input.checked);
    input.addEventListener("change", sync);
    sync();
  }

  async function start() {
    poll();
    try {
      const win = await get(`/api/output?${q}`);
      earliest = win.start;
      earlierButton.disabled = earliest === 0;
      append(win.pieces);
      log.scrollTop = log.scrollHeight;
      if (!document.body.dataset.ready) performance.mark("remo-ready");  // (bench/ui_bench.py)
      document.body.dataset.ready = "1";
      following(win.end);
    } catch (e) {
      errorBox.textContent = e.message;
      document.body.dataset.ready = "1";
    }
  }
  start();
})();
