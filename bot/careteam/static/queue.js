// Refreshes the queue's rows in place with the same filters; back to the login page when the session ends.
(function () {
  "use strict";
  var table = document.querySelector("table.queue");
  var rows = document.getElementById("queue-rows");
  if (!table || !rows) return;
  var seconds = parseInt(table.getAttribute("data-refresh"), 10) || 15;
  function refresh() {
    fetch("/queue/rows" + window.location.search, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (answer) {
        if (answer.status === 401) {
          window.location.assign("/login");
          return null;
        }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html !== null) rows.innerHTML = html; // server-rendered and escaped
      })
      .catch(function () { /* keep the rows shown; try again next time */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
