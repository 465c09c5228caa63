// confgate console: live updates over server-sent events. No framework,
// no build step. Text goes in with textContent; HTML only ever comes from
// this console's own pages (rendered and escaped by the server).
"use strict";
(function () {
  var ticks = 0;
  var lastChange = 0;
  var pendingChange = null;
  var badge = document.getElementById("badge-live");

  function setBadge(text, cls) {
    if (!badge) return;
    badge.textContent = text;
    badge.className = "badge " + cls;
  }

  // The overview's figures and the header's badges, from a tick.
  function applyTick(d) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var f = el.getAttribute("data-field");
      var v;
      if (f === "ready_text") v = d.ready ? "ready" : "not ready";
      else if (f === "stale_text") v = d.stale ? "stale: Kafka unreachable" : "no";
      else v = d[f];
      if (v !== undefined && el.textContent !== String(v)) el.textContent = String(v);
    });
    var r = document.getElementById("badge-ready");
    if (r) { r.textContent = d.ready ? "ready" : "not ready"; r.className = "badge " + (d.ready ? "ok" : "bad"); }
    var s = document.getElementById("badge-stale");
    if (s) s.hidden = !d.stale;
  }

  // refresh re-fetches this page and swaps in the fresh copy of each
  // element matching sel (by id).
  var inflight = false;
  function refresh(sel) {
    var els = document.querySelectorAll(sel);
    if (!els.length || inflight) return;
    inflight = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        els.forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) {
            el.innerHTML = fresh.innerHTML;
            el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
          }
        });
      })
      .catch(function () { setBadge("offline", "bad"); })
      .finally(function () { inflight = false; });
  }

  // The fleet table, rebuilt from /console/fleet.json with the page's
  // filters.
  var fleetInflight = false;
  function refreshFleet() {
    var table = document.getElementById("fleet-table");
    if (!table || fleetInflight) return;
    fleetInflight = true;
    fetch("fleet.json" + location.search, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (!d.clients) return;
        var tbody = document.createElement("tbody");
        d.clients.forEach(function (c) {
          var tr = document.createElement("tr");
          var td = document.createElement("td");
          var a = document.createElement("a");
          a.href = "client?id=" + encodeURIComponent(c.id);
          a.textContent = c.id;
          td.appendChild(a);
          tr.appendChild(td);
          [c.service, c.label_text, c.gateway].forEach(function (t) {
            var x = document.createElement("td"); x.textContent = t; tr.appendChild(x);
          });
          var st = document.createElement("td");
          var span = document.createElement("span");
          span.className = "state " + c.state.replace(/[^a-z_]/g, "");
          span.textContent = c.state;
          st.appendChild(span);
          tr.appendChild(st);
          [c.lag_records, c.last_report, c.rejections].forEach(function (t) {
            var x = document.createElement("td"); x.textContent = String(t); tr.appendChild(x);
          });
          tbody.appendChild(tr);
        });
        var old = table.tBodies[0];
        if (old.innerHTML !== tbody.innerHTML) table.replaceChild(tbody, old);
        var n = document.getElementById("fleet-count");
        if (n) n.textContent = d.clients.length + " of " + d.total;
      })
      .catch(function () { setBadge("offline", "bad"); })
      .finally(function () { fleetInflight = false; });
  }

  // A change: re-fetch what shows entries, at most every 500ms.
  function onChange() {
    var wait = 500 - (Date.now() - lastChange);
    if (wait > 0) {
      if (!pendingChange) pendingChange = setTimeout(function () { pendingChange = null; onChange(); }, wait);
      return;
    }
    lastChange = Date.now();
    refresh("[data-live=change]");
    refreshFleet();
  }

  if (!window.EventSource) { setBadge("no live updates", "off"); return; }
  var es = new EventSource("events");
  es.addEventListener("open", function () { setBadge("live", "ok"); });
  es.addEventListener("error", function () {
    setBadge(es.readyState === EventSource.CLOSED ? "live updates unavailable" : "reconnecting…", "off");
  });
  es.addEventListener("tick", function (ev) {
    setBadge("live", "ok");
    applyTick(JSON.parse(ev.data));
    ticks++;
    if (ticks % 5 === 0) { refresh("[data-refresh]"); refreshFleet(); }
  });
  es.addEventListener("changed", function () { onChange(); });
})();
