// Live updates for agents, pushed by the server (Server-Sent Events; see chat/push.py): nothing is asked
// while nothing happens. The queue page reloads when tickets arrive; the workspace hears of new messages and
// status changes at once. EventSource reconnects by itself and resumes after the last message id it saw.
(function () {
  "use strict";

  function follow(url, handlers) {
    if (!window.EventSource) return null;
    var source = new EventSource(url, { withCredentials: true });
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (event) {
        var data;
        try {
          data = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        handlers[name](data);
      });
    });
    window.addEventListener("pagehide", function () { source.close(); });
    return source;
  }

  function onQueuePage() {
    var base = location.pathname.replace(/\/+$/, "/");
    if (!/\/chat\/ticket\/$/.test(base)) return;
    var newest = null;
    follow(base + "live/", {
      counts: function (data) {
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
      },
    });
  }

  function onWorkspace() {
    var ws = document.getElementById("workspace");
    if (!ws || !ws.dataset.poll) return;
    var list = document.getElementById("ws-history");
    var last = function () { return parseInt(ws.dataset.last || "0", 10); };
    // The workspace script (workspace.js) redraws the page in place when told; without it, draw here.
    var inPlace = function () { return !!window.SupportWorkspace; };
    var changed = function () { ws.dispatchEvent(new CustomEvent("support:changed")); };

    function render(m) {
      if (list.querySelector('li.msg[data-id="' + m.id + '"]')) return;
      var li = document.createElement("li");
      li.className = "msg role-" + m.role;
      li.dataset.id = m.id;
      var meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = m.role + (m.author_name ? " · " + m.author_name : "") + (m.confidence != null ? " · confidence " + m.confidence.toFixed(2) : "");
      var text = document.createElement("div");
      text.className = "text";
      text.textContent = m.text;
      li.appendChild(meta);
      li.appendChild(text);
      list.appendChild(li);
      ws.dataset.last = String(Math.max(last(), m.id));
    }

    follow(ws.dataset.poll + "?after=" + last(), {
      message: function (m) {
        if (m.id <= last()) return;
        if (inPlace()) changed();
        else if (list) render(m);
      },
      status: function (s) {
        if (s.status === ws.dataset.status) return;
        if (inPlace()) changed();
        else location.reload();
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () { onQueuePage(); onWorkspace(); });
})();
