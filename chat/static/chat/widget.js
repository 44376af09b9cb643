/*
 * Customer support chat widget. One tag on any site, no dependencies, no build step:
 *
 *   <script src="https://SUPPORT_HOST/static/chat/widget.js" data-title="Help" data-color="#0b5fff"
 *           data-greeting="Hi!" data-lang="es|en|auto" data-position="right|left" data-kb="default" defer></script>
 *
 * data-prechat="contact" offers the optional name + e-mail card before the first message, always; by default it is
 * offered only while the team is away (outside BUSINESS_HOURS), and data-prechat="off" never offers it then.
 *
 * A site that knows who its customer is adds data-user-id, data-user-email and data-user-hmac: the hex
 * HMAC-SHA256, with the site's CHAT_IDENTITY_SECRET, of "<user id>\n<e-mail in lower case>". Unsigned or
 * badly signed identity is ignored. The widget speaks the conversation's language once it has one.
 *
 * The API base is the script's own origin unless data-api says otherwise. Everything is drawn inside a
 * Shadow DOM so the host page's styles and ours never meet. Message text only ever reaches the page as
 * text nodes (see renderMarkdown): never through innerHTML. Customers' text is shown exactly as typed; bot
 * and agent text gets bold, italics and lists only. Links are made only from vetted URL fields (a source's
 * url), http(s) and mailto only: a URL inside any message text stays text.
 */
(() => {
  "use strict";

  const script = document.currentScript || document.querySelector('script[src*="chat/widget.js"]');
  if (!script) return;
  const ds = script.dataset;
  const kb = ds.kb || "default";
  const mountedKey = `__supportChat:${kb}`;
  if (window[mountedKey]) return; // the tag was pasted twice
  window[mountedKey] = true;

  const REPLY_IDLE_TIMEOUT_MS = 30000; // the typing indicator never outlives this much silence
  const EVENTS_IDLE_TIMEOUT_MS = 60000; // the server closes the events stream after ~25 s
  const DEFAULT_COLOR = "#0b5fff";
  const PEOPLE = ["waiting_for_agent", "with_agent"];

  const apiBase = (() => {
    try {
      return ds.api ? new URL(ds.api, location.href).href.replace(/\/+$/, "") : new URL(script.src, location.href).origin;
    } catch {
      return location.origin;
    }
  })();

  const pick = (code) => (String(code || "").toLowerCase().startsWith("es") ? "es" : "en");
  const langAttr = (ds.lang || "auto").toLowerCase();
  const explicitLang = langAttr === "es" || langAttr === "en" ? langAttr : null;
  // The page's language until the conversation has one; then the conversation's (see followLanguage).
  let lang = explicitLang || pick(document.documentElement.lang || navigator.language);

  const STRINGS = {
    en: {
      open: "Open support chat",
      openUnread: (n) => `Open support chat (${n} new)`,
      close: "Close chat",
      title: "Help",
      greeting: "Hi! How can we help you today? You can write in English or Spanish.",
      placeholder: "Write your message…",
      input: "Your message",
      send: "Send",
      newChat: "Start a new conversation",
      newChatShort: "New chat",
      confirmNew: "Start a new conversation? This one will be closed.",
      confirmNewQueued: "Start a new conversation? This one will be closed and you will lose your place in the queue.",
      confirmYes: "Start new",
      cancel: "Cancel",
      human: "Talk to a person",
      typing: "Typing…",
      sources: "Sources",
      feedback: "Was this answer helpful?",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      thanks: "Thanks for your feedback!",
      retry: "Retry",
      lost: "Connection lost.",
      slow: "The reply is taking too long.",
      error: "Something went wrong. Please try again.",
      busy: "Too many messages. Please wait a moment and try again.",
      down: "The chat is temporarily unavailable. Please try again in a few minutes.",
      loadError: "We couldn't load your conversation.",
      tooLong: (n) => `Your message is too long: the limit is ${n} characters.`,
      queue: (p, w, over) =>
        `You are number ${p} in the queue` + (over ? ": the wait may be more than 2 hours." : w ? `, about ${w} min to wait.` : "."),
      waiting: "Waiting for a person to join…",
      byEmail: "Our team is offline right now: we will answer you by e-mail.",
      withAgent: "You are chatting with a person.",
      resolved: "This conversation is closed. Write again if you need anything else.",
      you: "You",
      bot: "Assistant",
      staff: "Support team",
      person: "a person from our team",
      choices: "Did you mean one of these?",
      choicesOffered: (n) => `${n} possible answers below. Pick one, “None of these” or “Talk to a person”.`,
      none: "None of these",
      empty: "The message is empty.",
      conflict: "A person is taking care of this conversation now.",
      expired: "These options are for an earlier message.",
      unavailable: "That answer is no longer available; pick another one or ask for a person.",
      notFound: "We couldn't find this conversation.",
      contactTitle: "Leave your e-mail so we can answer even if you close this page (optional).",
      contactName: "Name",
      contactEmail: "E-mail",
      contactSave: "Save",
      contactSkip: "Not now",
      contactSaved: (email) => `Thanks! If you leave, we will answer at ${email}.`,
      contactInvalid: "Please check the e-mail address.",
      away: "Our team is away right now.",
      awayBack: (when) => `Our team is away right now. We're back ${when}.`,
      backToday: (time) => `today at ${time}`,
      backTomorrow: (time) => `tomorrow at ${time}`,
      backOn: (day, time) => `on ${day} at ${time}`,
      prechatHint: "Or just write your question below.",
      csat: "How well did we help? Rate us from 1 to 5.",
      csatLabel: (n) => `${n} out of 5`,
      csatThanks: "Thanks for your rating!",
    },
    es: {
      open: "Abrir el chat de ayuda",
      openUnread: (n) => `Abrir el chat de ayuda (${n} nuevos)`,
      close: "Cerrar el chat",
      title: "Ayuda",
      greeting: "¡Hola! ¿En qué podemos ayudarte? Puedes escribir en español o en inglés.",
      placeholder: "Escribe tu mensaje…",
      input: "Tu mensaje",
      send: "Enviar",
      newChat: "Empezar una conversación nueva",
      newChatShort: "Nueva conversación",
      confirmNew: "¿Empezar una conversación nueva? Esta se cerrará.",
      confirmNewQueued: "¿Empezar una conversación nueva? Esta se cerrará y perderás tu turno en la cola.",
      confirmYes: "Empezar otra",
      cancel: "Cancelar",
      human: "Hablar con una persona",
      typing: "Escribiendo…",
      sources: "Fuentes",
      feedback: "¿Te ha servido esta respuesta?",
      helpful: "Me ha servido",
      notHelpful: "No me ha servido",
      thanks: "¡Gracias por tu opinión!",
      retry: "Reintentar",
      lost: "Se ha perdido la conexión.",
      slow: "La respuesta está tardando demasiado.",
      error: "Algo ha fallado. Inténtalo de nuevo.",
      busy: "Demasiados mensajes. Espera un momento y vuelve a intentarlo.",
      down: "El chat no está disponible ahora mismo. Inténtalo de nuevo en unos minutos.",
      loadError: "No hemos podido cargar tu conversación.",
      tooLong: (n) => `Tu mensaje es demasiado largo: el límite es de ${n} caracteres.`,
      queue: (p, w, over) =>
        `Eres el número ${p} en la cola` + (over ? ": la espera puede superar las 2 horas." : w ? `; espera aproximada: ${w} min.` : "."),
      waiting: "Esperando a que se una una persona…",
      byEmail: "Ahora no hay nadie disponible: te responderemos por correo electrónico.",
      withAgent: "Estás hablando con una persona.",
      resolved: "Esta conversación está cerrada. Escríbenos de nuevo si necesitas algo más.",
      you: "Tú",
      bot: "Asistente",
      staff: "Equipo de soporte",
      person: "persona del equipo",
      choices: "¿Te refieres a una de estas?",
      choicesOffered: (n) => `${n} posibles respuestas a continuación. Elige una, «Ninguna de estas» o «Hablar con una persona».`,
      none: "Ninguna de estas",
      empty: "El mensaje está vacío.",
      conflict: "Una persona del equipo se está ocupando ya de esta conversación.",
      expired: "Estas opciones eran para un mensaje anterior.",
      unavailable: "Esa respuesta ya no está disponible; elige otra o pide hablar con una persona.",
      notFound: "No hemos encontrado esta conversación.",
      contactTitle: "Déjanos tu correo para responderte aunque cierres esta página (opcional).",
      contactName: "Nombre",
      contactEmail: "Correo electrónico",
      contactSave: "Guardar",
      contactSkip: "Ahora no",
      contactSaved: (email) => `¡Gracias! Si te vas, te responderemos en ${email}.`,
      contactInvalid: "Revisa la dirección de correo.",
      away: "Nuestro equipo no está disponible ahora mismo.",
      awayBack: (when) => `Nuestro equipo no está disponible ahora mismo. Volvemos ${when}.`,
      backToday: (time) => `hoy a las ${time}`,
      backTomorrow: (time) => `mañana a las ${time}`,
      backOn: (day, time) => `el ${day} a las ${time}`,
      prechatHint: "O escribe directamente tu pregunta abajo.",
      csat: "¿Qué tal te hemos ayudado? Puntúanos de 1 a 5.",
      csatLabel: (n) => `${n} de 5`,
      csatThanks: "¡Gracias por tu valoración!",
    },
  };
  let t = STRINGS[lang];

  // --- Colours: text on the accent and links always meet WCAG AA (4.5:1) -------------------------
  const parseHex = (c) => {
    const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(String(c || "").trim());
    if (!m) return null;
    const s = m[1].length === 3 ? m[1].replace(/./g, "$&$&") : m[1];
    return [0, 2, 4].map((i) => parseInt(s.slice(i, i + 2), 16));
  };
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const toHex = (rgb) => "#" + rgb.map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
  const palette = (color) => {
    const rgb = parseHex(color) || parseHex(DEFAULT_COLOR);
    const white = [255, 255, 255];
    const ink = [26, 26, 26];
    let link = rgb;
    while (contrast(link, [238, 240, 243]) < 4.6) link = link.map((v) => v * 0.9); // on the bot bubble
    return {
      "--accent": toHex(rgb),
      "--on": contrast(rgb, white) >= contrast(rgb, ink) ? "#fff" : "#1a1a1a",
      "--link": toHex(link),
    };
  };

  // --- DOM helpers ---------------------------------------------------------------------------------
  const h = (tag, attrs, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids) if (kid != null) el.append(kid); // strings become text nodes
    return el;
  };
  /** Marks an element as showing string `key` (as text, or in `attrs`), so relabel() can redraw it in another language. */
  const L = (el, key, { attrs = [], text = !attrs.length, suffix = "" } = {}) => {
    el.dataset.t = key;
    if (attrs.length) el.dataset.tAttrs = attrs.join(",");
    if (text) el.dataset.tText = suffix;
    paint(el);
    return el;
  };
  const paint = (el) => {
    const value = t[el.dataset.t];
    if (typeof value !== "string") return;
    for (const attr of (el.dataset.tAttrs || "").split(",").filter(Boolean)) el.setAttribute(attr, value);
    if (el.dataset.tText !== undefined) el.textContent = value + el.dataset.tText;
  };
  const ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    close: "M6 6l12 12M18 6L6 18",
    renew: "M4 12a8 8 0 0 1 14-5.3M20 4v4h-4M20 12a8 8 0 0 1-14 5.3M4 20v-4h4",
    send: "M4 12l16-8-6 16-2-7z",
    up: "M7 11v9H4v-9zM7 11l4-8a2 2 0 0 1 3 2l-1 5h6a2 2 0 0 1 2 2l-2 7a2 2 0 0 1-2 1H7",
    down: "M7 13V4H4v9zM7 13l4 8a2 2 0 0 0 3-2l-1-5h6a2 2 0 0 0 2-2l-2-7a2 2 0 0 0-2-1H7",
  };
  const icon = (name) => {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", ICONS[name]);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.append(path);
    return svg;
  };

  // --- Light Markdown, built as DOM nodes ------------------------------------------------------------
  const safeUrl = (raw) => {
    try {
      const url = new URL(raw);
      return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  };
  // No links from message text: a Markdown link shows as "label (url)", a bare URL as itself, both as text.
  const INLINE = /\[([^\]\n]+)\]\(\s*([^)\s]+)\s*\)|\*\*(\S(?:.*?\S)?)\*\*|\*([^*\s](?:[^*]*?[^*\s])?)\*/g;
  const renderInline = (text, into) => {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) into.append(text.slice(last, m.index));
      if (m[1] !== undefined) into.append(`${m[1]} (${m[2]})`);
      else if (m[3] !== undefined) into.append(renderInline(m[3], h("strong")));
      else into.append(renderInline(m[4], h("em")));
      last = m.index + m[0].length;
    }
    if (last < text.length) into.append(text.slice(last));
    return into;
  };
  const renderMarkdown = (text, into) => {
    into.textContent = "";
    let para = null;
    let list = null;
    for (const line of String(text ?? "").replace(/\r\n?/g, "\n").split("\n")) {
      if (!line.trim()) {
        para = list = null;
        continue;
      }
      const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
      const numbered = bullet ? null : /^\s*(\d{1,4})[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        const tag = bullet ? "ul" : "ol";
        if (!list || list.tagName.toLowerCase() !== tag) {
          list = into.appendChild(h(tag, numbered && numbered[1] !== "1" ? { start: numbered[1] } : null));
        }
        list.append(renderInline(bullet ? bullet[1] : numbered[2], h("li")));
        para = null;
        continue;
      }
      list = null;
      if (para) para.append(h("br"));
      else para = into.appendChild(h("p"));
      renderInline(line, para);
    }
    return into;
  };

  // --- Storage: {id, token, status, open} per API origin and knowledge base ---------------------------
  const storeKey = `support-chat:v1:${apiBase}:${kb}`;
  const load = () => {
    try {
      const v = JSON.parse(localStorage.getItem(storeKey) || "null");
      return v && typeof v.id === "string" && typeof v.token === "string" ? v : null;
    } catch {
      return null;
    }
  };
  const saved = load();
  const state = {
    id: saved?.id || null,
    token: saved?.token || null,
    status: saved?.status || "bot",
    wasOpen: !!saved?.open,
    open: false,
    busy: false,
    loaded: false,
    history: null,
    max: 2000,
    unread: 0,
    lastId: 0,
    deferred: [],
    poll: null,
    queue: null, // the last `queue` of a status: place and wait
    customer: null, // {name, email, verified}
    contactSkipped: false,
    prechatSkipped: false, // for this page: the pre-chat card is not offered again after "Not now"
  };
  const save = () => {
    try {
      if (state.id) {
        const v = { id: state.id, token: state.token, status: state.status, open: state.open };
        localStorage.setItem(storeKey, JSON.stringify(v));
      } else localStorage.removeItem(storeKey);
    } catch {
      /* storage blocked (private mode, sandboxed frame): the chat still works for this page */
    }
  };

  // --- HTTP ---------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code);
      this.status = status;
      this.code = code;
      this.human = message;
    }
  }
  const api = async (path, { method = "GET", body, auth = true, signal, stream = false } = {}) => {
    const headers = { Accept: stream ? "text/event-stream" : "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
    const res = await fetch(apiBase + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      mode: "cors",
      cache: "no-store",
      signal,
    });
    if (!res.ok) {
      let error = {};
      try {
        error = (await res.json()).error || {};
      } catch {
        /* not our JSON (a proxy's HTML page): fall back to a message chosen by status */
      }
      throw new ApiError(res.status, String(error.code || `http_${res.status}`), String(error.message || ""));
    }
    return stream ? res : res.json();
  };
  // The server's messages are English (they are for developers too): the customer is told in the
  // conversation's language, chosen by the error's code.
  const humanError = (err, fallback) => {
    if (!(err instanceof ApiError)) return fallback || t.error;
    const byCode = {
      rate_limited: t.busy,
      too_large: t.tooLong(state.max),
      unavailable: t.down,
      conflict: t.conflict,
      already_chosen: t.expired,
      choices_expired: t.expired,
      unknown_choice: t.unavailable,
      no_choices: t.expired,
      not_found: t.notFound,
      unauthorized: t.notFound,
    }[err.code];
    if (byCode) return byCode;
    if (err.status === 400 && /empty/i.test(err.human)) return t.empty;
    if (err.status === 429) return t.busy;
    if (err.status === 503) return t.down;
    if (err.status === 413) return t.tooLong(state.max);
    return t.error;
  };
  const gone = (err) => err instanceof ApiError && [401, 403, 404].includes(err.status);

  /** Reads a Server-Sent Events body; onEvent returning false stops early. Returns true if stopped so. */
  const readEvents = async (res, onEvent, onActivity) => {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        onActivity();
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = /\r?\n\r?\n/.exec(buffer))) {
          const block = buffer.slice(0, end.index);
          buffer = buffer.slice(end.index + end[0].length);
          let event = "message";
          const data = [];
          for (const line of block.split(/\r?\n/)) {
            if (!line || line[0] === ":") continue; // comments keep the connection alive
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = value;
            else if (field === "data") data.push(value);
          }
          if (!data.length) continue;
          let payload;
          try {
            payload = JSON.parse(data.join("\n"));
          } catch {
            continue;
          }
          if (onEvent(event, payload) === false) return true;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  };

  // --- The interface --------------------------------------------------------------------------------------
  const CSS = `
:host{all:initial}
*{box-sizing:border-box}
.root{all:initial;display:block;position:fixed;bottom:20px;right:20px;z-index:2147483000;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1a1a1a;text-align:left;direction:ltr;cursor:auto}
.root.left{right:auto;left:20px}
button{font:inherit;cursor:pointer}
:focus-visible{outline:3px solid var(--link);outline-offset:2px}
.launcher{width:60px;height:60px;border-radius:50%;border:0;background:var(--accent);color:var(--on);box-shadow:0 4px 16px rgba(0,0,0,.28);display:grid;place-items:center;position:relative;transition:transform .15s}
.launcher:hover{transform:scale(1.05)}
.launcher svg{width:28px;height:28px}
.launcher:focus-visible{outline-offset:3px}
.badge{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#c62828;color:#fff;font-size:12px;font-weight:700;line-height:22px;text-align:center}
.badge:empty{display:none}
.panel{position:absolute;bottom:76px;right:0;width:384px;max-width:calc(100vw - 40px);height:620px;max-height:calc(100vh - 116px);background:#fff;border-radius:16px;box-shadow:0 12px 48px rgba(0,0,0,.28);display:flex;flex-direction:column;overflow:hidden}
.left .panel{right:auto;left:0}
.panel[hidden]{display:none}
header{background:var(--accent);color:var(--on);padding:10px 8px 10px 18px;display:flex;align-items:center;gap:2px;flex:none}
h2{font-size:17px;line-height:1.3;margin:0;flex:1;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.icon{background:transparent;border:0;color:inherit;width:40px;height:40px;border-radius:10px;display:grid;place-items:center}
.icon:hover{background:rgba(127,127,127,.25)}
.icon svg{width:20px;height:20px}
header :focus-visible{outline-color:var(--on);outline-offset:-3px}
.log{flex:1;overflow-y:auto;padding:16px 14px;display:flex;flex-direction:column;gap:12px;background:#f7f8fa;overscroll-behavior:contain}
.msg{display:flex;flex-direction:column;max-width:86%;align-items:flex-start;align-self:flex-start}
.msg.customer{align-self:flex-end;align-items:flex-end}
.bubble{padding:9px 13px;border-radius:16px;background:#eef0f3;overflow-wrap:anywhere;min-width:0}
.customer .bubble{background:var(--accent);color:var(--on);border-bottom-right-radius:4px;white-space:pre-wrap}
.bot .bubble,.agent .bubble{border-bottom-left-radius:4px}
.agent .bubble{background:#fff;border:1px solid #c9ced5}
.bubble a{color:var(--link);text-decoration:underline}
.customer .bubble a{color:inherit}
.bubble p{margin:0}
.bubble>*+*{margin-top:6px}
.bubble ul,.bubble ol{margin-bottom:0;padding-left:22px}
.who{font-size:12.5px;color:#4a4f57;margin:0 4px 3px;font-weight:600}
.msg.system{align-self:center;max-width:94%;text-align:center;align-items:center;font-size:13.5px;color:#4a4f57}
.system .bubble{background:transparent;padding:2px 8px;font-style:italic}
.pending .bubble{opacity:.72}
.src{font-size:13px;margin:6px 4px 0;color:#4a4f57;display:flex;gap:6px;flex-wrap:wrap}
.src ul{list-style:none;margin:0;padding:0;display:contents}
.src li::before{content:"↗ "}
.src a{color:var(--link)}
.fb{display:flex;gap:2px;margin:3px 0 0;align-items:center;font-size:12.5px;color:#4a4f57}
.fb button{background:transparent;border:1px solid transparent;border-radius:8px;width:32px;height:30px;color:#4a4f57;display:grid;place-items:center}
.fb button:hover{background:#eef0f3}
.fb button[aria-pressed=true]{color:var(--link);border-color:currentColor}
.fb button[aria-disabled=true]{cursor:default}
.renew{background:transparent;border:1px solid currentColor;color:inherit;border-radius:999px;height:32px;padding:0 10px 0 8px;display:flex;align-items:center;gap:5px;font-size:13px;font-weight:600;white-space:nowrap;margin-right:4px}
.renew[aria-disabled=true]{opacity:.6;cursor:default}
.renew svg{width:16px;height:16px}
.renew:hover{background:rgba(127,127,127,.25)}
.confirm{padding:10px 14px;background:#fff;border-top:1px solid #e3e6ea;font-size:14px;flex:none}
.confirm[hidden]{display:none}
.confirm p{margin:0 0 8px}
.row{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.confirm button,.contact button,.csat button{background:#fff;border:1px solid #8a9099;color:#1a1a1a;border-radius:999px;padding:5px 14px;font-size:13.5px;font-weight:600}
.confirm .primary,.contact .primary{background:var(--accent);border-color:var(--accent);color:var(--on)}
.contact{align-self:stretch;display:flex;flex-direction:column;align-items:stretch;gap:6px;background:#fff;border:1px solid #c9ced5;border-radius:12px;padding:10px 12px;font-size:14px}
.contact p{margin:0}
.contact .away{font-weight:600}
.contact .note{font-size:12.5px;color:#4a4f57}
.contact label{display:flex;flex-direction:column;gap:2px;font-size:12.5px;color:#4a4f57}
.contact input{font:inherit;font-size:15px;border:1px solid #767c85;border-radius:8px;padding:6px 8px;color:#1a1a1a}
.contact input[aria-invalid=true]{border-color:#b00020}
.csat{display:flex;flex-direction:column;align-items:center;gap:6px;margin-top:6px;font-style:normal}
.csat .stars{display:flex;gap:6px}
.csat button{width:38px;height:38px;padding:0;display:grid;place-items:center}
.csat button[aria-pressed=true]{background:var(--accent);border-color:var(--accent);color:var(--on)}
.csat-q{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.csat-thanks[hidden]{display:none}
.fb svg{width:16px;height:16px}
.choices{display:flex;flex-direction:column;align-items:flex-start;gap:6px;margin:8px 0 0}
.choice{background:#fff;border:1px solid var(--link);color:var(--link);border-radius:12px;padding:6px 12px;font-size:14px;text-align:left;max-width:100%;overflow-wrap:anywhere}
.choice.other{border-color:#8a9099;color:#1a1a1a}
.choice:hover:enabled{background:#eef0f3}
.choice[aria-pressed=true]{background:var(--accent);border-color:var(--accent);color:var(--on)}
.choice:disabled{cursor:default}
.choice:disabled:not([aria-pressed=true]){opacity:.6}
.typing{display:flex;gap:5px;padding:14px 15px}
.typing i{width:7px;height:7px;border-radius:50%;background:#6b717a;animation:dot 1.2s infinite}
.typing i:nth-child(2){animation-delay:.15s}.typing i:nth-child(3){animation-delay:.3s}
@keyframes dot{0%,60%,100%{opacity:.35;transform:none}30%{opacity:1;transform:translateY(-3px)}}
@media (prefers-reduced-motion:reduce){.typing i{animation:none}.launcher{transition:none}}
.err{align-self:stretch;background:#fdecea;color:#8a1c14;border-radius:12px;padding:8px 10px 8px 14px;font-size:14px;display:flex;align-items:center;gap:10px;justify-content:space-between}
.err button,.human{background:#fff;border:1px solid currentColor;color:inherit;border-radius:999px;padding:5px 14px;font-size:13.5px;font-weight:600;white-space:nowrap}
.banner{padding:8px 16px;background:#fff6d6;color:#4d3800;font-size:13.5px;border-top:1px solid #efdc9a;flex:none}
.banner:empty{display:none}
.bar{display:flex;justify-content:center;padding:8px 12px 0;background:#fff;border-top:1px solid #e3e6ea;flex:none}
.human{color:#1a1a1a;border-color:#8a9099}
.human:hover{background:#f3f4f6}
.human[hidden]{display:none}
form{display:flex;gap:8px;padding:8px 12px 2px;background:#fff;align-items:flex-end;margin:0;flex:none}
textarea{flex:1;resize:none;border:1px solid #767c85;border-radius:12px;padding:9px 12px;font:inherit;color:#1a1a1a;background:#fff;max-height:132px;min-height:42px;height:42px;margin:0}
textarea::placeholder{color:#6b717a}
textarea:focus-visible{outline-offset:0}
textarea[aria-invalid=true]{border-color:#b00020}
.send{width:42px;height:42px;flex:none;border-radius:12px;border:0;background:var(--accent);color:var(--on);display:grid;place-items:center}
.send svg{width:20px;height:20px}
.send:disabled{opacity:.45;cursor:default}
.meta{display:flex;justify-content:space-between;gap:8px;padding:2px 16px 8px;background:#fff;font-size:12.5px;color:#4a4f57;min-height:24px;flex:none}
.meta .count{margin-left:auto}
.over{color:#b00020;font-weight:600}
.sr{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0;padding:0}
@media (max-width:480px){
.root.open{inset:0}
.open .launcher{display:none}
.panel{position:fixed;inset:0;width:100%;max-width:none;height:100%;max-height:none;border-radius:0}
textarea{font-size:16px}
}`;

  const host = h("div", { "data-support-chat": kb });
  // The page's own rules can reach the host element (and through it, inherited properties): neutralise them.
  host.setAttribute("style", "all:initial!important;display:block!important");
  const shadow = host.attachShadow({ mode: "open" });
  const root = h("div", { class: `root${ds.position === "left" ? " left" : ""}` });
  const applyColor = (c) => Object.entries(palette(c)).forEach(([k, v]) => root.style.setProperty(k, v));
  applyColor(ds.color);

  const badge = h("span", { class: "badge", "aria-hidden": "true" });
  const launcher = h("button", {
    type: "button",
    class: "launcher",
    "aria-expanded": "false",
    "aria-controls": "panel",
    onclick: () => (state.open ? close() : open()),
  });
  launcher.append(icon("chat"), badge);

  const titleEl = ds.title ? h("h2", { id: "title" }, ds.title) : L(h("h2", { id: "title" }), "title");
  const closeBtn = L(h("button", { type: "button", class: "icon", onclick: () => close() }), "close", { attrs: ["aria-label", "title"] });
  closeBtn.append(icon("close"));
  // Says what it does in words (an arrow alone reads as "refresh"), and asks before closing anything.
  const newBtn = L(h("button", { type: "button", class: "renew", onclick: () => askReset() }), "newChat", { attrs: ["title"] });
  newBtn.append(icon("renew"), L(h("span"), "newChatShort"));
  const log = h("div", { class: "log", role: "log", "aria-live": "polite" });
  if (ds.title) log.setAttribute("aria-label", ds.title);
  else L(log, "title", { attrs: ["aria-label"] });
  const banner = h("div", { class: "banner", role: "status" });
  const humanBtn = L(h("button", { type: "button", class: "human", onclick: () => handoff() }), "human");
  const input = L(h("textarea", { rows: "1", autocomplete: "off", enterkeyhint: "send" }), "input", { attrs: ["aria-label"] });
  const sendBtn = L(h("button", { type: "submit", class: "send", disabled: true }), "send", { attrs: ["aria-label", "title"] });
  sendBtn.append(icon("send"));
  const confirmBar = h("div", { class: "confirm", role: "group", hidden: true });
  const hint = h("span", { class: "hint", "aria-live": "polite" });
  const announcer = h("div", { class: "sr announce", "aria-live": "polite" });
  const count = h("span", { class: "count", "aria-hidden": "true" });
  const form = h("form", {
    onsubmit: (e) => {
      e.preventDefault();
      submit();
    },
  });
  form.append(input, sendBtn);
  const panel = h("div", { class: "panel", id: "panel", role: "dialog", "aria-labelledby": "title", hidden: true });
  panel.append(
    h("header", null, titleEl, newBtn, closeBtn),
    log,
    confirmBar,
    banner,
    h("div", { class: "bar" }, humanBtn),
    form,
    h("div", { class: "meta" }, hint, count)
  );
  panel.setAttribute("lang", lang);
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !confirmBar.hidden) {
      e.stopPropagation();
      hideConfirm(newBtn);
    } else if (e.key === "Escape" && state.open) {
      e.stopPropagation();
      close();
    }
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!e.repeat) submit();
    }
  });
  input.addEventListener("input", () => updateComposer());
  root.append(panel, launcher, announcer);
  shadow.append(h("style", null, CSS), root);

  let serverGreetings = null; // {es, en} from the widget config
  const greetingEl = h("div", { class: "msg bot greet" }, L(h("span", { class: "sr" }), "bot", { suffix: ": " }), h("div", { class: "bubble" }));
  const drawGreeting = () => renderMarkdown(ds.greeting || serverGreetings?.[lang] || t.greeting, greetingEl.lastChild);
  drawGreeting();
  log.append(greetingEl);

  const launcherLabel = () => launcher.setAttribute("aria-label", state.unread ? t.openUnread(state.unread) : t.open);
  launcherLabel();
  /** Every string the customer sees, again, in the current language. */
  const relabel = () => {
    panel.setAttribute("lang", lang);
    shadow.querySelectorAll("[data-t]").forEach(paint);
    input.setAttribute("placeholder", t.placeholder);
    launcherLabel();
    drawGreeting();
    drawBanner();
    drawAway();
    shadow.querySelectorAll(".csat button").forEach((b) => b.setAttribute("aria-label", t.csatLabel(b.dataset.rating)));
  };
  /** The conversation's language wins over the page's: an English conversation is English everywhere. */
  const followLanguage = (code) => {
    if (!STRINGS[code] || code === lang) return;
    lang = code;
    t = STRINGS[code];
    relabel();
  };

  // --- Rendering messages ---------------------------------------------------------------------------------
  const seen = new Map(); // message id -> element, so two streams never draw one message twice
  // The log follows new content (a streaming answer, then its sources and 👍/👎) unless the customer has
  // scrolled up to read; scrolling back to the end follows again.
  let follow = true;
  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  const toBottom = () => {
    follow = true;
    log.scrollTop = log.scrollHeight;
  };
  let lastScrollTop = 0;
  log.addEventListener(
    "scroll",
    () => {
      // Only a move up by the customer stops following; content growing under us never does.
      if (log.scrollTop < lastScrollTop - 2 && !nearBottom()) follow = false;
      else if (nearBottom()) follow = true;
      lastScrollTop = log.scrollTop;
    },
    { passive: true }
  );
  const keepFollowing = () => {
    if (follow) {
      log.scrollTop = log.scrollHeight;
      lastScrollTop = log.scrollTop;
    }
  };
  new MutationObserver(keepFollowing).observe(log, {
    childList: true,
    subtree: true,
    characterData: true,
    attributes: true,
    attributeFilter: ["hidden"], // a line revealed in place (the thanks for a rating)
  });
  if (window.ResizeObserver) new ResizeObserver(keepFollowing).observe(log); // the panel opened, the phone's keyboard
  const append = (el, force) => {
    if (force) follow = true;
    log.append(el);
    keepFollowing();
    return el;
  };

  const buildMessage = (m) => {
    const row = h("div", { class: `msg ${m.role}` });
    if (m.role === "agent") {
      const name = m.author_name ? h("span", null, m.author_name) : L(h("span"), "staff");
      row.append(h("div", { class: "who" }, name, " · ", L(h("span"), "person")));
    } else if (m.role !== "system") {
      row.append(L(h("span", { class: "sr" }), m.role === "customer" ? "you" : "bot", { suffix: ": " }));
    }
    const bubble = h("div", { class: "bubble" });
    if (m.role === "customer") bubble.textContent = String(m.text ?? "");
    else renderMarkdown(m.text, bubble);
    row.append(bubble);
    if (m.role === "bot") {
      const sources = (m.sources || []).filter((s) => s && (s.title || s.url));
      if (sources.length) {
        const list = h("ul");
        for (const s of sources) {
          const href = s.url && safeUrl(s.url);
          const label = s.title || s.url;
          list.append(h("li", null, href ? h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label) : label));
        }
        row.append(h("div", { class: "src" }, L(h("span"), "sources", { suffix: ":" }), list));
      }
      if (m.choices && m.id != null) row.append(choiceGroup(m));
      else if (m.id != null) row.append(feedbackBar(m));
    }
    if (m.role === "system" && m.csat && m.id != null) row.append(csatGroup(m));
    if (m.id != null) row.dataset.id = m.id;
    return row;
  };

  /** Draws a stored message once; `replacing` is the provisional element it takes the place of. */
  const showMessage = (m, { replacing = null, notify = false } = {}) => {
    if (!m || !["customer", "bot", "agent", "system"].includes(m.role)) return null;
    if (m.id != null && seen.has(m.id)) {
      if (replacing && replacing !== seen.get(m.id)) replacing.remove();
      return seen.get(m.id);
    }
    if (m.role === "customer" && m.id != null) {
      // The server already has a message we are still sending (the events stream saw it first): confirm it in place.
      const mine = [...log.querySelectorAll(".msg.customer:not([data-id])")].find((el) => el.sent === m.text.trim());
      if (mine) {
        mine.classList.remove("pending");
        mine.dataset.id = m.id;
        seen.set(m.id, mine);
        state.lastId = Math.max(state.lastId, m.id);
        return mine;
      }
    }
    const el = buildMessage(m);
    if (m.role === "customer") el.sent = String(m.text).trim();
    if (replacing && replacing.isConnected) replacing.replaceWith(el);
    else append(el);
    if (m.id != null) {
      seen.set(m.id, el);
      if (typeof m.id === "number" && m.id > state.lastId) state.lastId = m.id;
    }
    if (notify && !state.open && m.role !== "customer") {
      state.unread += 1;
      badge.textContent = String(state.unread);
      launcherLabel();
    }
    return el;
  };

  // --- Choices: "did you mean one of these?" as buttons, plus "none of these" and "talk to a person" ----------------
  const announce = (text) => {
    announcer.textContent = "";
    setTimeout(() => (announcer.textContent = text), 50); // a fresh node change, so it is read even if repeated
  };
  const choiceGroup = (m) => {
    const picked = m.choices.picked ?? null;
    const options = [
      ...(m.choices.offered || []).map((o) => [String(o.id), String(o.title ?? ""), "choice", null]),
      ["none", "", "choice other", "none"],
      ["person", "", "choice other", "human"],
    ];
    const group = L(h("div", { class: "choices", role: "group" }), "choices", { attrs: ["aria-label"] });
    const buttons = options.map(([value, label, cls, key]) => {
      const b = h(
        "button",
        {
          type: "button",
          class: cls,
          "data-choice": value,
          "aria-pressed": String(picked === value),
          disabled: picked != null,
          onclick: () => choose(m, value, group),
        },
        label
      );
      return key ? L(b, key) : b;
    });
    group.append(...buttons);
    group.addEventListener("keydown", (e) => {
      const live = buttons.filter((b) => !b.disabled);
      const at = live.indexOf(shadow.activeElement);
      if (at < 0) return;
      const to = { ArrowDown: at + 1, ArrowRight: at + 1, ArrowUp: at - 1, ArrowLeft: at - 1, Home: 0, End: live.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      live[(to + live.length) % live.length].focus();
    });
    return group;
  };
  /** The `choices` event: the offer's buttons are drawn (by its message) and announced; focus goes to the first. */
  const offerChoices = (data) => {
    const el = seen.get(data.message_id);
    if (!el) return;
    if (!el.querySelector(".choices")) {
      el.querySelector(".fb")?.remove();
      el.append(choiceGroup({ id: data.message_id, choices: { offered: data.offered, picked: data.picked } }));
    }
    const first = el.querySelector(".choices button:enabled");
    if (!first) return;
    announce(t.choicesOffered((data.offered || []).length));
    if (state.open && shadow.activeElement === input && !input.value) first.focus();
  };
  const closeChoices = () => log.querySelectorAll(".choices button").forEach((b) => (b.disabled = true));
  /** Choices the customer has written past (or that a person has taken over) no longer apply. */
  const closeStaleChoices = () => {
    if (PEOPLE.includes(state.status)) return closeChoices();
    const customers = log.querySelectorAll(".msg.customer");
    const last = customers[customers.length - 1];
    if (!last) return;
    for (const group of log.querySelectorAll(".choices")) {
      if (group.compareDocumentPosition(last) & Node.DOCUMENT_POSITION_FOLLOWING) {
        group.querySelectorAll("button").forEach((b) => (b.disabled = true));
      }
    }
  };

  const choose = async (m, value, group) => {
    if (state.busy) return;
    const buttons = [...group.querySelectorAll("button")];
    const chosen = buttons.find((b) => b.dataset.choice === value);
    buttons.forEach((b) => (b.disabled = true));
    chosen.setAttribute("aria-pressed", "true");
    input.focus(); // the pressed button is disabled now: keep the keyboard somewhere useful
    state.busy = true;
    updateComposer();
    const idle = idleAbort();
    const { ctrl, kick } = idle;
    const view = replyView();
    log.setAttribute("aria-busy", "true");
    try {
      kick();
      const res = await api(`/api/conversations/${state.id}/messages/${m.id}/choose`, {
        method: "POST",
        body: { choice: value },
        stream: true,
        signal: ctrl.signal,
      });
      kick();
      await readEvents(res, (event, data) => (kick(), view.handle(event, data)), kick);
      if (!view.finished && !view.answered) throw new TypeError("stream ended early");
      m.choices.picked = value;
    } catch (err) {
      view.discard();
      if (err instanceof ApiError && (err.status === 409 || gone(err))) {
        setHint(humanError(err), true); // already chosen, or the conversation moved on: the set stays closed
      } else if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        chosen.setAttribute("aria-pressed", "false");
        buttons.forEach((b) => (b.disabled = false));
        setHint(humanError(err), true);
      } else {
        errorRow(idle.timedOut ? t.slow : humanError(err, t.lost), () => choose(m, value, group)); // the same pick again
      }
    } finally {
      finish(ctrl, idle.timer, view.typing);
    }
  };

  const feedbackBar = (m) => {
    const bar = L(h("div", { class: "fb", role: "group" }), "feedback", { attrs: ["aria-label"] });
    const note = h("span", { class: "sr" });
    // Once rated the buttons are aria-disabled, not disabled: the one pressed keeps the keyboard focus
    // (a disabled button would drop it to the page's body).
    const buttons = [
      [1, "helpful", "up"],
      [-1, "notHelpful", "down"],
    ].map(([value, key, name]) => {
      const b = L(
        h("button", {
          type: "button",
          "aria-pressed": String(m.feedback === value),
          "aria-disabled": m.feedback != null ? "true" : null,
          onclick: () => {
            if (b.getAttribute("aria-disabled") !== "true") rate(m, value, buttons, note);
          },
        }),
        key,
        { attrs: ["aria-label", "title"] }
      );
      b.append(icon(name));
      return b;
    });
    bar.append(...buttons, note);
    return bar;
  };

  const rate = async (m, value, buttons, note) => {
    buttons.forEach((b) => b.setAttribute("aria-disabled", "true"));
    try {
      const res = await api(`/api/conversations/${state.id}/messages/${m.id}/feedback`, {
        method: "POST",
        body: { helpful: value === 1 },
      });
      m.feedback = value;
      buttons.forEach((b, i) => b.setAttribute("aria-pressed", String((i === 0 ? 1 : -1) === value)));
      L(note, "thanks");
      note.className = "";
      if (res.notice) showMessage(res.notice, { notify: true });
      if (res.status && res.status !== state.status) {
        applyStatus(res.status, null);
        refresh(); // the feedback answer has no queue; the conversation has
      }
    } catch (err) {
      buttons.forEach((b) => b.removeAttribute("aria-disabled"));
      setHint(humanError(err, t.lost), true);
    }
  };

  // --- Satisfaction: 1-5 under the closing message of a resolved ticket --------------------------------------
  const csatGroup = (m) => {
    const group = h("div", { class: "csat", role: "group" });
    const question = L(h("span", { class: "csat-q", id: `csat-${m.id}` }), "csat");
    group.setAttribute("aria-labelledby", question.id);
    const thanks = L(h("span", { class: "csat-thanks", "aria-live": "polite" }), "csatThanks");
    thanks.hidden = m.csat.rating == null;
    const buttons = [1, 2, 3, 4, 5].map((n) =>
      h(
        "button",
        {
          type: "button",
          "data-rating": n,
          "aria-label": t.csatLabel(n),
          "aria-pressed": String(m.csat.rating === n),
          onclick: async () => {
            try {
              await api(`/api/conversations/${state.id}/messages/${m.id}/csat`, { method: "POST", body: { rating: n } });
              m.csat.rating = n;
              buttons.forEach((b, i) => b.setAttribute("aria-pressed", String(i + 1 === n)));
              thanks.hidden = false;
            } catch (err) {
              setHint(humanError(err, t.lost), true);
            }
          },
        },
        String(n)
      )
    );
    group.append(question, h("div", { class: "stars" }, ...buttons), thanks);
    return group;
  };

  const errorRow = (message, onRetry) => {
    const retry = L(h("button", { type: "button" }), "retry");
    const row = h("div", { class: "err" }, h("span", null, message), retry);
    retry.addEventListener("click", () => {
      row.remove();
      onRetry();
    });
    append(row, true);
    return row;
  };

  /** The banner under the log: the place in the queue and the wait, live (each `status` event brings them). */
  const drawBanner = () => {
    const { status, queue } = state;
    let text = "";
    if (status === "waiting_for_agent") {
      if (queue?.by_email) text = t.byEmail;
      else if (queue?.position) text = t.queue(queue.position, queue.expected_wait_minutes, queue.wait_over);
      else text = t.waiting;
    } else if (status === "with_agent") text = t.withAgent;
    // "resolved": the closing message says it (and asks for a rating); a banner would say it twice.
    if (banner.textContent !== text) banner.textContent = text;
  };
  const applyStatus = (status, queue) => {
    if (!status) return;
    state.status = status;
    state.queue = status === "waiting_for_agent" ? queue || state.queue : null;
    save();
    drawBanner();
    humanBtn.hidden = PEOPLE.includes(status);
    if (PEOPLE.includes(status)) closeChoices();
    if (status === "waiting_for_agent") offerContact();
    keepFollowing(); // the banner's height changed
    if (PEOPLE.includes(status)) startPolling();
  };

  // --- Contact: a name and e-mail, so the team can answer after the customer has gone -------------------------
  // Before the first message too: while the team is away (the widget config says so), or always with
  // data-prechat="contact". Optional: the customer can skip it or just type; saving it starts the conversation.
  const prechatMode = (ds.prechat || "").toLowerCase(); // "contact": always; "off": never; else while away
  let team = null; // {away, back_at} from the widget config
  let awayLine = null;
  const backWhen = () => {
    const at = team?.back_at ? new Date(team.back_at) : null;
    if (!at || Number.isNaN(at.getTime())) return null;
    const locale = lang === "es" ? "es-ES" : "en-GB";
    const time = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(at);
    const days = Math.round((new Date(at).setHours(0, 0, 0, 0) - new Date().setHours(0, 0, 0, 0)) / 86400000);
    if (days === 0) return t.backToday(time);
    if (days === 1) return t.backTomorrow(time);
    return t.backOn(new Intl.DateTimeFormat(locale, { weekday: "long" }).format(at), time);
  };
  const drawAway = () => {
    if (!awayLine) return;
    const when = backWhen();
    awayLine.textContent = when ? t.awayBack(when) : t.away;
  };
  const offerPrechat = () => {
    const wanted = prechatMode === "contact" || (prechatMode !== "off" && team?.away === true);
    const signed = !!(ds.userHmac && ds.userEmail); // the site says who this is: nothing to ask
    if (!wanted || signed || state.prechatSkipped || !state.open || state.id || state.busy) return;
    if (log.querySelector(".msg.customer")) return;
    offerContact({ prechat: true });
  };
  let contactCard = null;
  const offerContact = ({ prechat = false } = {}) => {
    if (contactCard?.prechat && !prechat) {
      // Handed to a person with the pre-chat card still open: bring it (and whatever is typed in it) down to now.
      contactCard.prechat = false;
      append(contactCard, true);
      return;
    }
    if (contactCard || state.customer?.email || state.contactSkipped) return;
    const name = h("input", { type: "text", autocomplete: "name", maxlength: "200", value: state.customer?.name || "" });
    const email = h("input", { type: "email", autocomplete: "email", maxlength: "254", required: true });
    const status = h("span", { class: "hint", "aria-live": "polite" });
    const remove = () => {
      contactCard?.remove();
      contactCard = null;
    };
    const card = h(
      "form",
      {
        class: "contact",
        novalidate: true,
        onsubmit: async (e) => {
          e.preventDefault();
          if (!email.value.trim() || !email.checkValidity()) {
            email.setAttribute("aria-invalid", "true");
            L(status, "contactInvalid");
            email.focus();
            return;
          }
          try {
            await ensureConversation(); // before the first message there is no conversation yet: start it
            const res = await api(`/api/conversations/${state.id}/contact`, {
              method: "POST",
              body: { name: name.value.trim(), email: email.value.trim() },
            });
            state.customer = res.customer;
            const saved = h("div", { class: "msg system" }, h("div", { class: "bubble" }, t.contactSaved(res.customer.email)));
            card.replaceWith(saved);
            contactCard = null;
            if (awayLine?.parentNode === card) awayLine = null;
            input.focus();
          } catch (err) {
            email.setAttribute("aria-invalid", "true");
            status.textContent = err instanceof ApiError && err.status === 400 ? t.contactInvalid : humanError(err, t.lost);
          }
        },
      },
      L(h("p", { id: "contact-title" }), "contactTitle"),
      h("label", null, L(h("span"), "contactName"), name),
      h("label", null, L(h("span"), "contactEmail"), email),
      h(
        "div",
        { class: "row" },
        L(h("button", { type: "submit", class: "primary" }), "contactSave"),
        L(
          h("button", {
            type: "button",
            onclick: () => {
              // Skipping it before chatting does not stop the offer when a person is asked for.
              if (card.prechat) state.prechatSkipped = true;
              else state.contactSkipped = true;
              if (awayLine?.parentNode === card) awayLine = null;
              remove();
              input.focus();
            },
          }),
          "contactSkip"
        ),
        status
      )
    );
    card.setAttribute("aria-labelledby", "contact-title");
    card.prechat = prechat;
    if (prechat) {
      if (team?.away === true) {
        awayLine = h("p", { class: "away" });
        drawAway();
        card.prepend(awayLine);
      }
      card.querySelector(".row").before(L(h("p", { class: "note" }), "prechatHint"));
    }
    contactCard = card;
    append(card);
  };

  // --- Composer -----------------------------------------------------------------------------------------------
  const setHint = (text, error) => {
    hint.textContent = text || "";
    hint.className = `hint${error ? " over" : ""}`;
  };
  const updateComposer = () => {
    const length = input.value.trim().length;
    const over = input.value.length > state.max;
    count.textContent = input.value.length > state.max * 0.8 ? `${input.value.length}/${state.max}` : "";
    count.className = `count${over ? " over" : ""}`;
    if (over !== (input.getAttribute("aria-invalid") === "true")) {
      input.setAttribute("aria-invalid", String(over));
      setHint(over ? t.tooLong(state.max) : "", over);
    }
    sendBtn.disabled = state.busy || !length || over;
    // "New chat" waits for the reply on its way (askReset refuses meanwhile): say so rather than ignore a click.
    // aria-disabled, not disabled: a button that has the keyboard's focus keeps it.
    if (state.busy) newBtn.setAttribute("aria-disabled", "true");
    else newBtn.removeAttribute("aria-disabled");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, 132)}px`;
  };

  const submit = () => {
    const text = input.value.trim();
    if (state.busy || !text || input.value.length > state.max) return;
    input.value = "";
    setHint("");
    updateComposer();
    send(text, crypto.randomUUID ? crypto.randomUUID() : fallbackUuid(), null);
  };
  const fallbackUuid = () =>
    "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)
    );

  // --- Conversation lifecycle -------------------------------------------------------------------------------
  // One start at a time: saving the pre-chat contact and sending a first message may both need the conversation.
  let starting = null;
  const ensureConversation = (signal) => {
    if (state.id) return Promise.resolve();
    if (!starting) starting = startConversation(signal).finally(() => (starting = null));
    return starting;
  };
  const startConversation = async (signal) => {
    const body = { kb, language: explicitLang, page_url: (location.origin + location.pathname).slice(0, 1000) };
    // Who the host site says its logged-in customer is, signed with its secret; the server keeps it only if the
    // signature verifies (unsigned or badly signed: ignored, and the chat goes on).
    if (ds.userHmac || ds.userId || ds.userEmail) {
      Object.assign(body, { user_id: ds.userId || "", user_email: ds.userEmail || "", user_hmac: ds.userHmac || "" });
    }
    const c = await api("/api/conversations", { method: "POST", auth: false, signal, body });
    if (c.identity === "ignored") console.warn("support chat: data-user-* ignored: the signature (data-user-hmac) does not verify");
    state.id = c.id;
    state.token = c.token;
    state.loaded = true;
    state.status = c.status || "bot";
    state.customer = { name: "", email: c.identity === "verified" ? ds.userEmail || "" : "", verified: c.identity === "verified" };
    if (c.language) followLanguage(c.language);
    save();
    startPolling();
  };

  const forget = () => {
    stopPolling();
    state.id = state.token = null;
    state.status = "bot";
    state.queue = null;
    state.customer = null;
    state.contactSkipped = false;
    state.loaded = false;
    state.history = null;
    state.lastId = 0;
    seen.clear();
    contactCard = null;
    save();
  };

  /** ↻: asks first (in the panel: no browser dialog), then closes this conversation and its ticket on the server. */
  const askReset = () => {
    if (state.busy) return;
    if (!state.id) return reset();
    const yes = L(h("button", { type: "button", class: "primary", onclick: () => reset() }), "confirmYes");
    const no = L(h("button", { type: "button", onclick: () => hideConfirm(newBtn) }), "cancel");
    const question = L(h("p", { id: "confirm-q" }), PEOPLE.includes(state.status) ? "confirmNewQueued" : "confirmNew");
    confirmBar.replaceChildren(question, h("div", { class: "row" }, yes, no));
    confirmBar.setAttribute("aria-labelledby", "confirm-q");
    confirmBar.hidden = false;
    no.focus();
  };
  const hideConfirm = (focus) => {
    confirmBar.hidden = true;
    confirmBar.replaceChildren();
    focus?.focus();
  };
  const reset = async () => {
    if (state.busy) return;
    if (state.id) {
      try {
        await api(`/api/conversations/${state.id}/close`, { method: "POST", body: {} });
      } catch (err) {
        if (!gone(err)) {
          hideConfirm(newBtn);
          setHint(humanError(err, t.lost), true);
          return; // keep the conversation rather than leave its ticket open with nobody behind it
        }
      }
    }
    hideConfirm(null);
    forget();
    log.replaceChildren(greetingEl);
    awayLine = null;
    applyStatus("bot", null);
    setHint("");
    input.focus();
    offerPrechat();
  };

  const loadHistory = () => {
    if (!state.id || state.loaded) return Promise.resolve();
    if (state.history) return state.history;
    state.history = (async () => {
      try {
        const c = await api(`/api/conversations/${state.id}`);
        state.loaded = true;
        state.customer = c.customer || null;
        if (c.language) followLanguage(c.language);
        for (const m of c.messages || []) showMessage(m);
        applyStatus(c.status, c.queue);
        closeStaleChoices();
        toBottom();
      } catch (err) {
        if (gone(err)) forget();
        else errorRow(humanError(err, t.loadError), () => loadHistory());
      } finally {
        state.history = null;
      }
    })();
    return state.history;
  };

  const refresh = async () => {
    try {
      const c = await api(`/api/conversations/${state.id}`);
      if (c.language) followLanguage(c.language);
      for (const m of c.messages || []) showMessage(m, { notify: true });
      applyStatus(c.status, c.queue);
    } catch {
      /* the events stream will bring the same news */
    }
  };

  const showTyping = () =>
    append(
      h("div", { class: "msg bot" }, L(h("span", { class: "sr" }), "typing"), h("div", { class: "bubble typing" }, h("i"), h("i"), h("i"))),
      true
    );

  /** The bot's side of a streamed reply: typing dots, then the answer as it streams, then the stored messages. */
  const replyView = () => {
    const view = { typing: PEOPLE.includes(state.status) ? null : showTyping(), bot: null, text: "", answered: false, finished: false };
    const draw = () => {
      if (!view.bot) {
        view.bot = h("div", { class: "msg bot" }, L(h("span", { class: "sr" }), "bot", { suffix: ": " }), h("div", { class: "bubble" }));
        if (view.typing) view.typing.replaceWith(view.bot);
        else append(view.bot);
        view.typing = null;
      }
      renderMarkdown(view.text, view.bot.lastChild);
    };
    view.handle = (event, data) => {
      if (event === "token") {
        view.text += String(data.text ?? "");
        draw();
      } else if (event === "replace") {
        view.text = String(data.text ?? "");
        draw();
      } else if (event === "message") {
        view.answered = true;
        const el = showMessage(data, { replacing: view.bot || view.typing });
        if (el !== view.bot && view.bot) view.bot.remove();
        if (view.typing && el !== view.typing) view.typing.remove();
        view.bot = view.typing = null;
      } else if (event === "choices") {
        offerChoices(data);
      } else if (event === "status") {
        applyStatus(data.status, data.queue);
      } else if (event === "done") {
        view.finished = true;
        return false;
      } else if (event === "error") {
        throw new ApiError(0, String(data.code || "error"), String(data.message || ""));
      }
      return true;
    };
    view.discard = () => {
      if (view.bot) view.bot.remove();
      view.bot = null;
    };
    return view;
  };

  /** Sends one customer message and streams the reply. A retry reuses client_id, so the server stores it once. */
  const send = async (text, clientId, previous) => {
    if (state.busy) return;
    state.busy = true;
    updateComposer();
    await loadHistory();
    const mine = previous?.bubble?.isConnected
      ? previous.bubble
      : showMessage({ role: "customer", text }, {}) || null;
    mine.classList.add("pending");
    append(mine, true); // keep it last
    const idle = idleAbort();
    const { ctrl, kick } = idle;
    const view = replyView();
    let stored = false;
    let renew = false;
    log.setAttribute("aria-busy", "true");
    try {
      kick();
      await ensureConversation(ctrl.signal);
      const res = await api(`/api/conversations/${state.id}/messages`, {
        method: "POST",
        body: { text, client_id: clientId },
        stream: true,
        signal: ctrl.signal,
      });
      kick();
      await readEvents(
        res,
        (event, data) => {
          kick();
          if (event !== "customer") return view.handle(event, data);
          stored = true;
          // The server has just (re)detected the conversation's language from this message: follow it. (A
          // message from the events stream may carry the language the stream began with, so only this one counts.)
          if (data.language) followLanguage(data.language);
          closeChoices(); // the conversation moved on: earlier choices no longer apply
          mine.classList.remove("pending");
          showMessage(data, { replacing: mine });
          return true;
        },
        kick
      );
      if (!view.finished && !view.answered && !(stored && PEOPLE.includes(state.status))) throw new TypeError("stream ended early");
    } catch (err) {
      view.discard();
      if (gone(err) && !previous?.renewed && !stored) {
        // The stored conversation no longer exists (deleted, token rotated): start a fresh one, once.
        forget();
        renew = true;
      } else if (err instanceof ApiError && [400, 413].includes(err.status)) {
        mine.remove(); // not sendable as is: give the text back for editing
        if (!input.value) input.value = text;
        setHint(humanError(err), true);
      } else {
        const message = idle.timedOut ? t.slow : humanError(err, t.lost);
        errorRow(message, () => send(text, clientId, { bubble: mine }));
      }
    } finally {
      finish(ctrl, idle.timer, view.typing);
    }
    if (renew) send(text, clientId, { bubble: mine, renewed: true });
  };

  // Aborts a reply's request after REPLY_IDLE_TIMEOUT_MS of silence; each kick() (an event arrived) restarts the clock.
  const idleAbort = () => {
    const idle = { ctrl: new AbortController(), timer: 0, timedOut: false };
    idle.kick = () => {
      clearTimeout(idle.timer);
      idle.timer = setTimeout(() => {
        idle.timedOut = true;
        idle.ctrl.abort();
      }, REPLY_IDLE_TIMEOUT_MS);
    };
    return idle;
  };

  const finish = (ctrl, timer, typing) => {
    clearTimeout(timer);
    ctrl.abort();
    if (typing) typing.remove();
    log.setAttribute("aria-busy", "false");
    state.busy = false;
    updateComposer();
    for (const m of state.deferred.splice(0)) showMessage(m, { notify: true });
  };

  const handoff = async () => {
    humanBtn.disabled = true;
    try {
      await loadHistory();
      await ensureConversation();
      const res = await api(`/api/conversations/${state.id}/handoff`, { method: "POST", body: {} });
      if (res.notice) showMessage(res.notice);
      applyStatus(res.status, res.queue);
    } catch (err) {
      if (gone(err)) forget();
      errorRow(humanError(err, t.lost), () => handoff());
    } finally {
      humanBtn.disabled = false;
    }
  };

  // --- Live events: agent replies and status changes ---------------------------------------------------------
  const wantEvents = () => !!state.id && (state.open || PEOPLE.includes(state.status));
  const sleep = (ms, signal) =>
    new Promise((resolve) => {
      const id = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => (clearTimeout(id), resolve()), { once: true });
    });

  const startPolling = () => {
    if (state.poll || !wantEvents()) return;
    const ctrl = new AbortController();
    state.poll = ctrl;
    (async () => {
      let backoff = 1000;
      while (!ctrl.signal.aborted && wantEvents()) {
        const started = Date.now();
        const attempt = new AbortController();
        const stop = () => attempt.abort();
        ctrl.signal.addEventListener("abort", stop, { once: true });
        let timer = 0;
        const kick = () => {
          clearTimeout(timer);
          timer = setTimeout(stop, EVENTS_IDLE_TIMEOUT_MS);
        };
        try {
          kick();
          const res = await api(`/api/conversations/${state.id}/events?after=${state.lastId}`, {
            stream: true,
            signal: attempt.signal,
          });
          await readEvents(
            res,
            (event, data) => {
              if (event === "message") {
                // While a reply streams, the sending stream owns bot and customer messages.
                if (state.busy && data.role !== "agent") state.deferred.push(data);
                else showMessage(data, { notify: true });
              } else if (event === "status") applyStatus(data.status, data.queue);
              return true;
            },
            kick
          );
          backoff = 1000;
          await sleep(Math.max(0, 1000 - (Date.now() - started)), ctrl.signal); // never a tight loop
        } catch (err) {
          if (ctrl.signal.aborted) break;
          if (gone(err)) {
            forget();
            break;
          }
          await sleep(backoff * (0.5 + Math.random()), ctrl.signal);
          backoff = Math.min(backoff * 2, 30000);
        } finally {
          clearTimeout(timer);
          ctrl.signal.removeEventListener("abort", stop);
        }
      }
      if (state.poll === ctrl) state.poll = null;
    })();
  };
  const stopPolling = () => {
    if (state.poll) state.poll.abort();
    state.poll = null;
  };

  // --- Open / close -----------------------------------------------------------------------------------------------
  const open = ({ focus = true } = {}) => {
    if (state.open) return;
    state.open = true;
    save();
    panel.hidden = false;
    root.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    state.unread = 0;
    badge.textContent = "";
    launcherLabel();
    if (focus) input.focus();
    toBottom();
    loadHistory().then(() => {
      startPolling();
      offerPrechat();
    });
  };
  const close = () => {
    if (!state.open) return;
    state.open = false;
    save();
    panel.hidden = true;
    root.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
    if (!wantEvents()) stopPolling();
  };

  // --- Start --------------------------------------------------------------------------------------------------------
  const mount = () => {
    document.body.append(host);
    if (state.wasOpen && window.matchMedia("(min-width: 481px)").matches) open({ focus: false });
    else if (state.id && PEOPLE.includes(state.status)) loadHistory().then(() => startPolling());
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });

  api(`/api/widget-config?kb=${encodeURIComponent(kb)}`, { auth: false })
    .then((config) => {
      if (Number.isInteger(config.max_message_chars) && config.max_message_chars > 0) state.max = config.max_message_chars;
      if (!ds.title && config.title) {
        delete titleEl.dataset.t; // the site's name: the same in every language
        delete log.dataset.t;
        titleEl.textContent = config.title;
        log.setAttribute("aria-label", config.title);
      }
      if (!ds.color && parseHex(config.color)) applyColor(config.color);
      if (config.greeting && typeof config.greeting === "object") {
        serverGreetings = config.greeting;
        drawGreeting();
      }
      if (config.team && typeof config.team === "object") {
        team = config.team;
        offerPrechat(); // the panel may have opened before the config came
      }
      updateComposer();
    })
    .catch(() => {
      /* defaults serve; the first message will surface any real outage */
    });

  window.SupportChat = { open: () => open(), close: () => close() };
})();
