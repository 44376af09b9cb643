// Live updates for agents: the queue reloads when tickets arrive; the workspace appends new messages.
(function () {
  "use strict";
  function onQueuePage() {
    var base = location.pathname.replace(/\/+$/, "/");
    if (!/\/chat\/ticket\/$/.test(base)) return;
    var liveUrl = base + "live/";
    var newest = null;
    function tick() {
      fetch(liveUrl, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
        if (!data) return;
        document.title = (data.waiting ? "(" + data.waiting + ") " : "") + document.title.replace(/^\(\d+\) /, "");
        if (newest !== null && data.newest !== newest) {
          var selected = document.querySelectorAll("input.action-select:checked").length;
          if (!selected) { location.reload(); return; }
          var banner = document.getElementById("queue-banner") || document.createElement("div");
          banner.id = "queue-banner";
          banner.textContent = "New tickets arrived — reload to see them.";
          document.getElementById("content").prepend(banner);
        }
        newest = data.newest;
      }).catch(function () {});
    }
    tick();
    setInterval(tick, 3000);
  }

  function onWorkspace() {
    var ws = document.getElementById("workspace");
    if (!ws) return;
    var last = parseInt(ws.dataset.last || "0", 10);
    var status = ws.dataset.status;
    var list = document.getElementById("ws-history");
    var canned = document.getElementById("canned");
    if (canned) {
      canned.addEventListener("change", function () {
        var option = Array.prototype.find.call(document.querySelectorAll("#canned-list option"), function (o) { return o.value === canned.value; });
        if (option) { document.getElementById("reply-text").value = option.dataset.text; canned.value = ""; }
      });
    }
    function render(m) {
      var li = document.createElement("li");
      li.className = "msg role-" + m.role;
      li.dataset.id = m.id;
      var meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = m.role + (m.author_name ? " · " + m.author_name : "") + (m.confidence !== null ? " · confidence " + m.confidence.toFixed(2) : "");
      var text = document.createElement("div");
      text.className = "text";
      text.textContent = m.text;
      li.appendChild(meta);
      li.appendChild(text);
      list.appendChild(li);
    }
    function tick() {
      fetch(ws.dataset.poll + "?after=" + last, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
        if (!data) return;
        data.messages.forEach(function (m) { if (m.id > last) { render(m); last = m.id; } });
        if (data.status !== status) { location.reload(); }
      }).catch(function () {});
    }
    setInterval(tick, 1500);
  }
  document.addEventListener("DOMContentLoaded", function () { onQueuePage(); onWorkspace(); });
})();
