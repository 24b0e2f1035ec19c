/* modelyard console: live refresh of the parts of a page marked data-poll, without a reload.
   Each such element is replaced by the server's fragment of it every data-every ms (default
   1500) while the tab is visible. Buttons or forms with data-confirm ask first. No
   dependencies, nothing loaded from elsewhere. */
(function () {
  "use strict";
  var LOGIN = "/ui/login?next=";

  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-every") || "1500", 10);
    var last = null;
    var busy = false;
    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, {
        headers: { "x-console-poll": "1" },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (r) {
        if (r.status === 401) {
          window.location.assign(LOGIN + encodeURIComponent(location.pathname + location.search));
          return null;
        }
        if (!r.ok) {
          el.setAttribute("data-poll-error", String(r.status));
          return null;
        }
        return r.text();
      }).then(function (html) {
        if (html !== null && html !== last) {
          last = html;
          el.innerHTML = html;
          el.removeAttribute("data-poll-error");
          el.setAttribute("data-refreshed", String(Date.now()));
          if (el.querySelector("[data-ended]")) hideWhileActive();
        }
      }).catch(function () {
        el.setAttribute("data-poll-error", "network");
      }).then(function () {
        busy = false;
      });
    }
    window.setInterval(tick, every);
  }

  /* A rollout that ended has nothing left to steer: hide its buttons. */
  function hideWhileActive() {
    var els = document.querySelectorAll("[data-while-active]");
    for (var i = 0; i < els.length; i++) els[i].hidden = true;
  }

  function confirmBeforeSubmit(event) {
    var form = event.target;
    var submitter = event.submitter;
    var question = (submitter && submitter.getAttribute("data-confirm")) ||
      (form && form.getAttribute && form.getAttribute("data-confirm"));
    if (question && !window.confirm(question)) event.preventDefault();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var els = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < els.length; i++) poll(els[i]);
    document.addEventListener("submit", confirmBeforeSubmit);
  });
})();
