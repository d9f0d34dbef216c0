// Patient chat page: talks to the assistant's REST webhook on the same server, shows each triage as a
// card, keeps the conversation (and the id the server issued for it) across page reloads. The server
// names the conversation: the first message goes without an id, and every reply's recipient_id is the
// id to send next (a new one if the server did not accept the one sent).
// Opened from a patient's personal link (#p=<token>), the page first asks the server for a conversation
// bound to that patient, then takes the token out of the address bar (and so out of bookmarks, shared
// screenshots and the history entry) and starts that conversation fresh.
(function () {
  "use strict";
  var WEBHOOK = "../rest/webhook";
  var STORE = "triage-chat-v1";
  var LANGUAGE_STORE = "triage-chat-language";
  // English texts until config.json brings both languages (knowledge/translations.csv on the server).
  var ENGLISH = {
    level_emergency: "Emergency", level_call_now: "Call your care team now", level_mention: "Not urgent",
    level_unclear: "A person will read this", call: "Call {number}", call_care_team: "Call your care team",
    checking: "Checking...", opening: "Opening your conversation...",
    unreachable: "We could not reach the service. If you feel unwell, call your care team. " +
                 "In an emergency, call {number}.",
    link_expired: "This link no longer works: ask your care team for a new one. You can still tell us how you feel.",
    link_failed: "We could not open your link. You can still tell us how you feel.",
    banner: "Emergency: call now", switch: "Español"
  };
  var config = { emergency_number: "911", care_team_phone: "", strings: { en: ENGLISH } };
  // The page's language: the address (?lang=es), the patient's own choice, else the browser's.
  var language = chooseLanguage();

  function chooseLanguage() {
    var asked = new URLSearchParams(window.location.search).get("lang");
    if (asked === "es" || asked === "en") { return asked; }
    try {
      var chosen = localStorage.getItem(LANGUAGE_STORE);
      if (chosen === "es" || chosen === "en") { return chosen; }
    } catch (e) { /* private mode */ }
    return (navigator.language || "en").toLowerCase().indexOf("es") === 0 ? "es" : "en";
  }

  function t(key, values) {
    var table = (config.strings && config.strings[language]) || ENGLISH;
    var text = table[key] || ENGLISH[key] || key;
    Object.keys(values || {}).forEach(function (name) { text = text.split("{" + name + "}").join(values[name]); });
    return text;
  }

  function applyLanguage() {
    document.documentElement.lang = language;
    document.querySelectorAll("[data-i18n]").forEach(function (element) {
      var key = element.getAttribute("data-i18n");
      if (key === "switch") {
        element.textContent = language === "es" ? "English" : "Español";
        element.lang = language === "es" ? "en" : "es";
      } else {
        element.textContent = t(key);
      }
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (element) {
      element.placeholder = t(element.getAttribute("data-i18n-placeholder"));
    });
  }
  var state = load();
  var log = document.getElementById("log");
  var form = document.getElementById("composer");
  var input = document.getElementById("message");
  var status = document.getElementById("status");

  function load() {
    try {
      var saved = JSON.parse(localStorage.getItem(STORE) || "null");
      if (saved && Array.isArray(saved.items)) { return saved; }
    } catch (e) { /* a damaged store starts a new conversation */ }
    return { sender: null, items: [], emergency: false };
  }

  function save() {
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* private mode: no history */ }
  }

  function telLink(number, label, className) {
    var link = document.createElement("a");
    link.href = "tel:" + number.replace(/[^0-9+]/g, "");
    link.textContent = label || number;
    if (className) { link.className = className; }
    return link;
  }

  function applyConfig() {
    document.querySelectorAll('a.tel[data-number="emergency"]').forEach(function (a) {
      a.href = "tel:" + config.emergency_number.replace(/[^0-9+]/g, "");
      a.textContent = config.emergency_number;
    });
    if (config.care_team_phone) {
      document.getElementById("care-team-contact").hidden = false;
      document.querySelectorAll('a.tel[data-number="care_team"]').forEach(function (a) {
        a.href = "tel:" + config.care_team_phone.replace(/[^0-9+]/g, "");
        a.textContent = config.care_team_phone;
      });
    }
    document.getElementById("emergency-banner").hidden = !state.emergency;
  }

  function render(item) {
    var li = document.createElement("li");
    if (item.from === "patient") {
      li.className = "patient";
      li.textContent = item.text;
    } else if (item.triage && ENGLISH["level_" + item.triage.level]) {
      var level = item.triage.level;
      li.className = "card level-" + level;
      var article = document.createElement("article");
      var heading = document.createElement("h2");
      heading.textContent = t("level_" + level);
      article.appendChild(heading);
      item.texts.forEach(function (text) {
        var p = document.createElement("p");
        p.textContent = text;
        article.appendChild(p);
      });
      if (level === "emergency") {
        article.appendChild(telLink(config.emergency_number, t("call", { number: config.emergency_number }), "call-button"));
      } else if ((level === "call_now" || level === "unclear") && config.care_team_phone) {
        article.appendChild(telLink(config.care_team_phone, t("call_care_team"), "call-button"));
      }
      li.appendChild(article);
    } else {
      li.className = "bot";
      item.texts.forEach(function (text, index) {
        if (index) { li.appendChild(document.createElement("br")); }
        li.appendChild(document.createTextNode(text));
      });
    }
    if (item.buttons && item.buttons.length) {
      var group = document.createElement("div");
      group.className = "quick";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Choices");
      item.buttons.forEach(function (b) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "quick-reply";
        button.textContent = b.title;
        button.addEventListener("click", function () { send(b.payload); });
        group.appendChild(button);
      });
      li.appendChild(group);
    }
    log.appendChild(li);
    li.scrollIntoView({ block: "end" });
  }

  function add(item) {
    state.items.push(item);
    if (item.triage && item.triage.level === "emergency") { state.emergency = true; }
    save();
    render(item);
    applyConfig();
  }

  function safeText() {
    return t("unreachable", { number: config.emergency_number });
  }

  function send(text) {
    text = text.trim();
    if (!text) { return; }
    add({ from: "patient", text: text });
    status.textContent = t("checking");
    input.disabled = true;
    fetch(WEBHOOK, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(state.sender ? { sender: state.sender, message: text } : { message: text })
    }).then(function (answer) {
      // 429 (too many messages) still carries the safe reply for this message.
      if (!answer.ok && answer.status !== 429) { throw new Error("status " + answer.status); }
      return answer.json();
    }).then(function (messages) {
      var texts = [];
      var buttons = [];
      var triage = null;
      messages.forEach(function (m) {
        if (typeof m.recipient_id === "string" && m.recipient_id) { state.sender = m.recipient_id; }
        if (m.text) { texts.push(m.text); }
        (m.buttons || []).forEach(function (b) { buttons.push({ title: b.title, payload: b.payload || b.title }); });
        if (m.custom && m.custom.triage) { triage = m.custom.triage; }
      });
      add({ from: "bot", texts: texts.length ? texts : [safeText()], triage: triage, buttons: buttons });
    }).catch(function () {
      add({ from: "bot", texts: [safeText()], triage: { level: "unclear" } });
    }).then(function () {
      status.textContent = "";
      input.disabled = false;
      input.focus();
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    input.value = "";
    send(text);
  });
  document.getElementById("language-switch").addEventListener("click", function () {
    language = language === "es" ? "en" : "es";
    try { localStorage.setItem(LANGUAGE_STORE, language); } catch (e) { /* private mode */ }
    applyLanguage();
  });
  document.querySelectorAll(".quick-reply").forEach(function (button) {
    button.addEventListener("click", function () { send(button.textContent); });
  });

  function openPersonalLink() {
    // The token travels in the fragment (#p=), which browsers never send to a server or a proxy's log;
    // ?p= is read too, for a link typed by hand.
    var query = new URLSearchParams(window.location.search);
    var token = new URLSearchParams(window.location.hash.slice(1)).get("p") || query.get("p");
    if (!token) { return; }
    query.delete("p");
    var rest = query.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
    input.disabled = true;
    status.textContent = t("opening");
    fetch("../rest/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ link: token })
    }).then(function (answer) {
      if (!answer.ok) { throw new Error("status " + answer.status); }
      return answer.json();
    }).then(function (answer) {
      state = { sender: answer.sender, items: [], emergency: false, verified: answer.verified === true };
      save();
      log.textContent = "";
      status.textContent = state.verified ? "" : t("link_expired");
    }).catch(function () {
      status.textContent = t("link_failed");
    }).then(function () {
      input.disabled = false;
    });
  }

  applyLanguage();
  state.items.forEach(render);
  applyConfig();
  openPersonalLink();
  fetch("config.json").then(function (r) { return r.json(); }).then(function (loaded) {
    config = loaded;
    applyLanguage();
    applyConfig();
  }).catch(function () { /* defaults stay */ });
}());
