// Rolegate portal: small improvements only; every page works without this file.
// Ends written as "ends in …" tick once a minute.
(function () {
  "use strict";
  function words(ms) {
    var mins = Math.max(0, Math.floor(Math.abs(ms) / 60000));
    var d = Math.floor(mins / 1440), h = Math.floor((mins % 1440) / 60), m = mins % 60;
    if (d === 0 && h === 0) return m + " min";
    if (d === 0) return h + " h " + m + " min";
    return d + " d " + h + " h";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-ends]").forEach(function (el) {
      var end = Date.parse(el.getAttribute("data-ends"));
      if (isNaN(end)) return;
      el.textContent = end > now ? "ends in " + words(end - now) : "ended " + words(now - end) + " ago";
    });
  }
  // The server shows times in the viewer's time zone once the browser has said which.
  function tellTimeZone() {
    if (document.body.getAttribute("data-tz-known") !== "false") return;
    var csrf = document.querySelector("input[name=csrf]");
    var tz = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!csrf || !tz || !window.fetch) return;
    var body = new URLSearchParams();
    body.set("csrf", csrf.value);
    body.set("tz", tz);
    fetch("/ui/timezone", { method: "POST", body: body, credentials: "same-origin" });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 60000);
    tellTimeZone();
  });
})();
