// remo ui, the jobs page: every server's jobs and schedules, filtered in the page,
// refreshed every 2 s while the page is visible; the start form.
"use strict";

(() => {
  const { get, post, size, duration, cores, when, el, jobUrl } = remo;
  const REFRESH_MS = 2000;
  const tbody = document.querySelector("#jobs-table tbody");
  const schedBody = document.querySelector("#schedules-table tbody");
  const fServer = document.getElementById("f-server");
  const fState = document.getElementById("f-state");
  const fSearch = document.getElementById("f-search");
  const count = document.getElementById("count");
  const note = document.getElementById("jobs-note");
  const params = new URLSearchParams(location.search);
  let data = { servers: [] };
  // Rows in the table: filters and search go through every job, the table shows the
  // first rows of what matches (a table of 1,000 rows costs the browser a long layout).
  const PAGE_ROWS = 200;
  let rowLimit = PAGE_ROWS;
  const moreButton = document.getElementById("more");
  const allButton = document.getElementById("all");
  moreButton.addEventListener("click", () => { rowLimit += PAGE_ROWS; render(); });
  allButton.addEventListener("click", () => { rowLimit = Infinity; render(); });

  fServer.value = params.get("server") || "";
  fState.value = params.get("state") || "";
  fSearch.value = params.get("q") || "";
  const fAll = document.getElementById("f-all");
  fAll.checked = params.get("all") === "1";
  // Every user's jobs (admins): asked of the servers, not filtered here.
  function listUrl(limit) {
    const query = new URLSearchParams();
    if (limit) query.set("limit", limit);
    if (fAll.checked) query.set("all", "1");
    return `/api/jobs${query.toString() ? `?${query}` : ""}`;
  }

  function labelsText(labels) {
    return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  }

  function matches(job, server, state, words) {
    if (server && job.server !== server) return false;
    if (state === "ended" && job.state === "running") return false;
    if (state && state !== "ended" && job.state !== state) return false;
    if (!words.length) return true;
    const hay = `${job.server} ${job.id} ${job.name} ${job.owner} ${job.state} ${labelsText(job.labels)} ${job.command}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  }

  function usage(now, limit, fmt) {
    if (now === null || now === undefined) return "-";
    return limit ? `${fmt(now)} / ${fmt(limit)}` : fmt(now);
  }

  // The table is written as HTML in one go (12,000 elements for 1,000 jobs are parsed
  // several times faster than made one by one); every value goes through esc().
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  function row(job, now) {
    const age = job.started_at ? duration(now - job.started_at) : "-";  // as remo ps
    const key = esc(`${encodeURIComponent(job.server)} ${job.id}`);
    const labels = Object.entries(job.labels || {}).map(([k, v]) => `<span class="label">${esc(k)}=${esc(v)}</span>`).join("");
    return `<tr><td>${esc(job.server)}</td>`
      + `<td><a href="${esc(jobUrl(job.server, job.id))}" data-key="${key}">${esc(job.id)}</a></td>`
      + `<td>${esc(job.name)}</td>`
      + `<td class="state-${esc(job.state)}">${esc(job.state)}${job.oom ? " (oom)" : ""}</td>`
      + `<td class="labels">${labels}</td>`
      + `<td class="cmd" title="${esc(job.command)}"><span>${esc(job.command)}</span></td>`
      + `<td class="num" title="started ${esc(when(job.started_at))}">${esc(age)}</td>`
      + `<td class="num">${esc(usage(job.cpu_cores, job.cpu_limit, cores))}</td>`
      + `<td class="num">${esc(usage(job.memory_bytes, job.memory_limit, size))}</td>`
      + `<td class="num">${esc(job.exit)}</td></tr>`;
  }

  function render() {
    const server = fServer.value;
    const state = fState.value;
    const words = fSearch.value.toLowerCase().split(/\s+/).filter(Boolean);
    const now = Date.now() / 1000;
    const all = data.servers.flatMap((s) => s.jobs);
    all.sort((a, b) => b.started_at - a.started_at);
    const shown = all.filter((j) => matches(j, server, state, words));
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    tbody.innerHTML = shown.slice(0, rowLimit).map((job) => row(job, now)).join("");
    moreButton.hidden = shown.length <= rowLimit;
    moreButton.textContent = `Show ${Math.min(PAGE_ROWS, shown.length - rowLimit)} more`;
    allButton.hidden = shown.length <= rowLimit + PAGE_ROWS;
    allButton.textContent = `Show all ${shown.length}`;
    if (focused) {
      const again = Array.from(tbody.querySelectorAll("a[data-key]")).find((a) => a.dataset.key === focused);
      if (again) again.focus();
    }
    const listed = Math.min(shown.length, rowLimit);
    count.textContent = shown.length === all.length
      ? `${listed < shown.length ? `${listed} shown of ` : ""}${all.length} jobs`
      : `${listed < shown.length ? `${listed} shown of ` : ""}${shown.length} matching of ${all.length} jobs`;
    // (the first, short answer says nothing about more: the whole list follows it)
    const more = data.limit >= 1000 ? data.servers.filter((s) => s.more).map((s) => s.name) : [];
    note.textContent = more.length ? `Showing each server's newest ${data.limit} jobs; ${more.join(", ")} ha${more.length > 1 ? "ve" : "s"} more (remo ps --all-pages lists them).` : "";
    renderSchedules(server, words);
  }

  function renderSchedules(server, words) {
    const rows = [];
    for (const s of data.servers.flatMap((x) => x.schedules)) {
      if (server && s.server !== server) continue;
      const hay = `${s.server} ${s.id} ${s.name} ${labelsText(s.labels)} ${s.command}`.toLowerCase();
      if (!words.every((w) => hay.includes(w))) continue;
      const runs = s.recent_runs.slice(-8).map((r) => el("span", {
        class: `run run-${r.outcome}`,
        title: `${when(r.due_at)}: ${r.outcome}${r.job_id ? " (job " + r.job_id + ")" : ""}${r.detail ? ": " + r.detail : ""}`,
      }, r.outcome === "failed" ? "✗" : r.outcome === "skipped" ? "–" : "✓", el("span", { class: "sr" }, ` ${r.outcome}`)));
      rows.push(el("tr", {},
        el("td", {}, s.server), el("td", {}, s.id), el("td", {}, s.name || ""),
        el("td", { class: "cmd", title: s.command }, el("span", {}, s.command)),
        el("td", {}, s.every_seconds ? duration(s.every_seconds) : "once"),
        el("td", {}, s.active ? when(s.next_run_at) : "inactive"),
        el("td", {}, ...(runs.length ? runs : ["-"])),
      ));
    }
    schedBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7 }, "no schedules"))]));
  }

  function serverOptions(names) {
    for (const select of [fServer, document.getElementById("s-server")]) {
      const have = new Set(Array.from(select.options).map((o) => o.value));
      for (const name of names) if (!have.has(name)) select.append(el("option", { value: name }, name));
    }
  }

  async function loadServers() {
    const list = document.getElementById("servers");
    try {
      const found = await get("/api/servers");
      serverOptions(found.servers.map((s) => s.name));
      document.getElementById("all-users").hidden = !found.servers.some((s) => s.role === "admin");
      const only = (s, text) => el("a", { href: `/?server=${encodeURIComponent(s.name)}`, title: s.error || `remo ${s.version}: show only this server's jobs` }, text);
      list.replaceChildren(...found.servers.map((s) => s.error
        ? el("li", { class: "down" }, only(s, `${s.name}: unreachable`))
        : el("li", {}, only(s, `${s.name}: ${s.user} (${s.role})`))));
    } catch (e) {
      list.replaceChildren(el("li", { class: "down" }, e.message));
    }
  }

  function show(found) {
    data = found;
    serverOptions(data.servers.map((s) => s.name));
    render();
    const down = data.servers.filter((s) => s.error);
    if (down.length) note.textContent = down.map((s) => `${s.name}: ${s.error}`).join("; ");
  }

  // At first the newest 100 jobs, shown at once, then all of them.
  // (bench/ui_bench.py reads the marks.)
  async function firstLoad() {
    try {
      show(await get(listUrl(100)));
      performance.mark("remo-ready");
      document.body.dataset.ready = "1";
    } catch (e) {
      note.textContent = e.message;
    }
    await refresh();
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      show(await get(listUrl()));
      if (!document.body.dataset.complete) {
        performance.mark("remo-complete");
        document.body.dataset.ready = "1";
        document.body.dataset.complete = "1";
      }
    } catch (e) {
      note.textContent = e.message;
    }
    timer = setTimeout(tick, REFRESH_MS);
  }
  function tick() { if (document.visibilityState === "visible") refresh(); else timer = setTimeout(tick, REFRESH_MS); }

  function keepInUrl() {
    const p = new URLSearchParams();
    if (fServer.value) p.set("server", fServer.value);
    if (fState.value) p.set("state", fState.value);
    if (fSearch.value) p.set("q", fSearch.value);
    if (fAll.checked) p.set("all", "1");
    history.replaceState(null, "", p.toString() ? `/?${p}` : "/");
  }
  for (const input of [fServer, fState, fSearch]) {
    input.addEventListener("input", () => { keepInUrl(); rowLimit = PAGE_ROWS; render(); });
  }
  fAll.addEventListener("change", () => { keepInUrl(); refresh(); });
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());

  const form = document.getElementById("start-form");
  const status = document.getElementById("start-status");
  const error = document.getElementById("start-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.textContent = ""; error.textContent = "";
    const body = Object.fromEntries(new FormData(form).entries());
    body.private_tmp = form.elements.private_tmp.checked;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const got = await post("/api/start", body);
      if (got.job) {
        status.replaceChildren("Started job ", el("a", { href: jobUrl(got.job.server, got.job.id) }, got.job.id), ` on ${got.job.server}.`);
      } else {
        status.textContent = `Schedule ${got.schedule.id} on ${got.schedule.server}: next run ${when(got.schedule.next_run_at)}.`;
      }
      refresh();
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });

  loadServers();
  firstLoad();
})();
