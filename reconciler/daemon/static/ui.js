// The web UI's few scripts, no build step: sign in, and keep a page live over
// /api/v1/stream by re-fetching its fragment (see reconciler/daemon/ui.py).
"use strict";
(function () {
  var COALESCE_MS = 250;
  var TYPING_MS = 300;

  function say(id, text) {
    var element = document.getElementById(id);
    if (element) { element.textContent = text; }
  }

  function signIn(form) {
    var field = document.getElementById("token");
    form.addEventListener("submit", function (submitted) {
      submitted.preventDefault();
      var token = field.value.trim();
      if (!token) { say("login-error", "Enter a token."); return; }
      say("login-error", "");
      fetch("/api/v1/session", {
        headers: { Authorization: "Bearer " + token },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (response) {
        field.value = "";
        if (response.ok) { window.location.assign("/"); return; }
        say("login-error", response.status === 429
          ? "Too many failed attempts; try again in a minute."
          : "That token is not valid.");
        field.focus();
      }).catch(function () { say("login-error", "The daemon cannot be reached."); });
    });
  }

  // Run `action` (which returns a promise) at once on the first call, and once more
  // after it for any calls that came meanwhile or within `wait` ms: a burst of events
  // costs two fetches, and the first change shows without waiting for the burst to end.
  function coalesce(action, wait) {
    var busy = false;
    var again = false;
    function run() {
      busy = true;
      again = false;
      Promise.resolve(action()).catch(function () { return null; }).then(function () {
        setTimeout(function () {
          busy = false;
          if (again) { run(); }
        }, wait);
      });
    }
    return function () {
      if (busy) { again = true; } else { run(); }
    };
  }

  // Swap every [data-swap] part by id, keeping the focus on the same link or field.
  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var focused = document.activeElement;
    var href = focused && focused.getAttribute ? focused.getAttribute("href") : null;
    fresh.querySelectorAll("[data-swap]").forEach(function (part) {
      var here = document.getElementById(part.id);
      if (here && here.innerHTML !== part.innerHTML) { here.replaceWith(document.importNode(part, true)); }
    });
    if (href && !document.body.contains(focused)) {
      var again = document.querySelector("#live a[href=\"" + CSS.escape(href) + "\"]");
      if (again) { again.focus(); }
    }
  }

  // The list's filters apply as they change, without the Filter button (kept for
  // browsers without this script): the fragment's URL and the address follow them.
  function filtering(form, region, refresh) {
    var timer = null;
    function apply() {
      var query = new URLSearchParams();
      new FormData(form).forEach(function (value, name) {
        if (String(value).trim()) { query.append(name, String(value).trim()); }
      });
      var text = query.toString();
      region.setAttribute("data-live", "/ui/fragments/resources" + (text ? "?" + text : ""));
      window.history.replaceState(null, "", "/" + (text ? "?" + text : ""));
      refresh();
    }
    function soon() {
      if (timer !== null) { clearTimeout(timer); }
      timer = setTimeout(function () { timer = null; apply(); }, TYPING_MS);
    }
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
  }

  function live(region) {
    var subject = region.getAttribute("data-object");
    var refresh = coalesce(function () {
      var url = region.getAttribute("data-live");
      return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.location.assign("/login");
          return null;
        }
        return response.ok ? response.text() : null;
      }).then(function (html) { if (html !== null) { swap(html); } })
        .catch(function () { say("live-status", "Live updates: the daemon cannot be reached"); });
    }, COALESCE_MS);
    var form = document.querySelector("form.filters");
    if (form) { filtering(form, region, refresh); }
    if (!window.EventSource) { say("live-status", "Live updates: not supported by this browser"); return; }
    var stream = new EventSource("/api/v1/stream");
    stream.addEventListener("open", function () {
      say("live-status", "Live updates: on");
      refresh(); // whatever happened between the page's rendering and the stream's start
    });
    stream.addEventListener("error", function () {
      if (stream.readyState !== EventSource.CLOSED) { say("live-status", "Live updates: reconnecting"); return; }
      // Refused for good (a revoked or expired token): the fragment's fetch then
      // lands on the login page, and so does this page.
      say("live-status", "Live updates: off");
      refresh();
    });
    stream.addEventListener("event", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (ignored) { return; }
      if (subject && event.object && event.object.kind + "/" + event.object.name !== subject) { return; }
      refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("login");
    if (form) { signIn(form); }
    var region = document.querySelector("[data-live]");
    if (region) { live(region); }
  });
})();
