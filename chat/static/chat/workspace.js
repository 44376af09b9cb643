// The agent workspace, worked in place: every action posts with fetch and the page redraws only the parts
// that changed (the server renders them: admin/chat/_ws_*.html), so the reply box stays where it is.
// New messages arrive when something says the conversation changed: a "support:changed" event on #workspace
// (agent.js sends it) or SupportWorkspace.refresh(). A customer's new message sounds, shows in the title and,
// when the agent allowed it, as a desktop notification.
(function () {
  "use strict";

  function start() {
    var ws = document.getElementById("workspace");
    if (!ws) return;
    var last = parseInt(ws.dataset.last || "0", 10);
    var history = document.getElementById("ws-history");
    var flash = document.getElementById("ws-flash");
    var notifyButton = document.getElementById("ws-notify");
    var baseTitle = document.title;
    var unread = 0;
    var drawn = {};
    var busy = false;
    var again = false;

    function nearBottom() {
      return history.scrollHeight - history.scrollTop - history.clientHeight < 60;
    }
    function toBottom() {
      history.scrollTop = history.scrollHeight;
    }

    function replacePart(id, html, inner) {
      var el = document.getElementById(id);
      if (!el || html === undefined || drawn[id] === html) return;
      drawn[id] = html;
      // What the agent is typing survives a redraw.
      var typed = {};
      var focused = document.activeElement && document.activeElement.id;
      Array.prototype.forEach.call(el.querySelectorAll("textarea[id]"), function (box) { typed[box.id] = box.value; });
      if (inner) {
        // The header keeps its notification button.
        var keep = el.querySelector("#ws-notify");
        el.innerHTML = html;
        if (keep) el.appendChild(keep);
      } else {
        el.outerHTML = html;
      }
      Object.keys(typed).forEach(function (boxId) {
        var box = document.getElementById(boxId);
        if (box && typed[boxId]) box.value = typed[boxId];
      });
      if (focused && document.getElementById(focused) && document.activeElement === document.body) {
        document.getElementById(focused).focus();
      }
    }

    function showNotices(notices) {
      if (!notices || !notices.length) return;
      flash.innerHTML = "";
      notices.forEach(function (n) {
        var p = document.createElement("p");
        p.className = "ws-notice " + (n.level || "info");
        p.textContent = n.text;
        flash.appendChild(p);
      });
    }

    function apply(data, own) {
      var stick = own || nearBottom();
      if (data.history) {
        var template = document.createElement("template");
        template.innerHTML = data.history;
        Array.prototype.forEach.call(template.content.querySelectorAll("li.msg"), function (li) {
          if (!history.querySelector('li.msg[data-id="' + li.dataset.id + '"]')) history.appendChild(li);
        });
      }
      last = Math.max(last, data.last_id || 0);
      ws.dataset.last = String(last);
      ws.dataset.status = data.status;
      replacePart("ws-header", data.header, true);
      replacePart("ws-ticket", data.ticket ? '<div id="ws-ticket">' + data.ticket + "</div>" : undefined);
      replacePart("ws-customer", data.customer);
      replacePart("ws-actions", data.actions ? '<div id="ws-actions">' + data.actions + "</div>" : undefined);
      showNotices(data.notices);
      if (stick) toBottom();
      if (data.customer_wrote && !own) alertAgent(data.customer_wrote);
    }

    function request(method, body) {
      var url = ws.dataset.refresh + (method === "GET" ? "?partial=1&after=" + last : "");
      return fetch(url, {
        method: method,
        body: body,
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch", Accept: "application/json" },
      }).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      });
    }

    function refresh() {
      if (busy) {
        again = true;
        return Promise.resolve();
      }
      busy = true;
      return request("GET")
        .then(function (data) { apply(data, false); })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    }

    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.matches || !form.matches("form[data-ajax]") || !ws.contains(form)) return;
      event.preventDefault();
      var body = new FormData(form);
      body.append("after", String(last));
      var buttons = form.querySelectorAll("button");
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
      var keep = form.dataset.keepFocus;
      request("POST", body)
        .then(function (data) {
          var failed = (data.notices || []).some(function (n) { return n.level === "error"; });
          var box = keep && document.getElementById(keep);
          if (box && !failed) box.value = "";
          // Back to the box only if the agent has not moved on (typing a note while the reply was on its way).
          var active = document.activeElement;
          var stayed = !active || active === document.body || form.contains(active);
          apply(data, true);
          box = keep && document.getElementById(keep);
          if (box && stayed) box.focus();
        })
        .catch(function () {
          showNotices([{ level: "error", text: "That did not reach the server. Check the connection and try again." }]);
        })
        .then(function () {
          Array.prototype.forEach.call(buttons, function (b) { if (b.isConnected) b.disabled = false; });
        });
    });

    document.addEventListener("change", function (event) {
      if (event.target.id !== "canned") return;
      var canned = event.target;
      var option = Array.prototype.find.call(document.querySelectorAll("#canned-list option"), function (o) {
        return o.value === canned.value;
      });
      if (option) {
        document.getElementById("reply-text").value = option.dataset.text;
        canned.value = "";
      }
    });

    // --- telling the agent a customer wrote -----------------------------------------------------------------
    var audio = null;
    function beep() {
      try {
        audio = audio || new (window.AudioContext || window.webkitAudioContext)();
        if (audio.state === "suspended") audio.resume();
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.08, audio.currentTime);
        gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
        osc.connect(gain).connect(audio.destination);
        osc.start();
        osc.stop(audio.currentTime + 0.25);
      } catch (e) {
        /* no audio here: the title and the notification still tell */
      }
    }
    function alertAgent(count) {
      var away = document.hidden || !document.hasFocus();
      ws.dataset.alerts = String(parseInt(ws.dataset.alerts || "0", 10) + count);
      beep();
      if (away) {
        unread += count;
        document.title = "(" + unread + ") Customer wrote · " + baseTitle;
      }
      if (away && "Notification" in window && Notification.permission === "granted") {
        var texts = history.querySelectorAll('li.msg[data-role="customer"] .text');
        var lastText = texts.length ? texts[texts.length - 1].textContent.trim().slice(0, 140) : "";
        var note = new Notification("A customer wrote", { body: lastText, tag: ws.dataset.refresh });
        note.onclick = function () { window.focus(); note.close(); };
      }
    }
    function seen() {
      if (!document.hidden && unread) {
        unread = 0;
        document.title = baseTitle;
      }
    }
    document.addEventListener("visibilitychange", seen);
    window.addEventListener("focus", seen);
    if (notifyButton && "Notification" in window && Notification.permission === "default") {
      notifyButton.hidden = false;
      notifyButton.addEventListener("click", function () {
        Notification.requestPermission().then(function () { notifyButton.hidden = true; });
      });
    }

    ws.addEventListener("support:changed", function () { refresh(); });
    window.SupportWorkspace = { refresh: refresh };
    toBottom();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
