// Life OS front end: ask the API whether it is healthy.
(function () {
  "use strict";
  var el = document.getElementById("api-status");
  var base = window.LIFEOS_API || "http://" + window.location.hostname + ":8081";
  fetch(base + "/health")
    .then(function (r) { return r.json(); })
    .then(function (body) {
      el.textContent = body.status === "ok" ? "healthy (v" + body.version + ")" : "degraded";
      el.className = body.status === "ok" ? "ok" : "bad";
    })
    .catch(function () {
      el.textContent = "unreachable";
      el.className = "bad";
    });
})();
