// remo ui: what both pages share: calls to the dashboard's API, formatting, elements.
"use strict";

const remo = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function answer(response) {
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      throw new Error((data && data.error) || `the dashboard answered ${response.status}`);
    }
    return data;
  }

  // A read: GET, same origin, the cookie goes along.
  async function get(url) {
    return answer(await fetch(url, { credentials: "same-origin" }));
  }

  // An action: POST with a JSON body and the page's CSRF value.
  async function post(url, body) {
    return answer(await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Remo-CSRF": csrf },
      body: JSON.stringify(body),
    }));
  }

  function size(n) {
    if (n === null || n === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function duration(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + String(Math.floor(s / 3600) % 24).padStart(2, "0") + "h";
  }

  function cores(c) {
    return c === null || c === undefined ? "-" : c.toFixed(2);
  }

  function when(unix) {
    if (!unix) return "-";
    const d = new Date(unix * 1000);
    const near = Math.abs(Date.now() - d.getTime()) < 20 * 3600 * 1000;
    return near ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function clock(unix) {
    const d = new Date(unix * 1000);
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  // An element: el("td", {class: "num"}, "text", child...). Text is always text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function jobUrl(server, id) {
    return `/job?server=${encodeURIComponent(server)}&id=${encodeURIComponent(id)}`;
  }

  return { get, post, size, duration, cores, when, clock, el, jobUrl };
})();
