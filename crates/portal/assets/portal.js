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
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 60000);
  });
})();
