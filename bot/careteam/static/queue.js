// Refreshes the queue's rows in place with the same filters and page, and the "showing 1-50 of 612" line
// from the answer's headers (rows are never hidden without saying so); back to the login page when the
// session ends.
(function () {
  "use strict";
  var table = document.querySelector("table.queue");
  var rows = document.getElementById("queue-rows");
  var summary = document.getElementById("queue-summary");
  if (!table || !rows) return;
  var seconds = parseInt(table.getAttribute("data-refresh"), 10) || 15;
  function refresh() {
    fetch("/queue/rows" + window.location.search, {
      credentials: "same-origin",
      // Not a user action: the server does not restart the session's idle clock for it.
      headers: { "X-Requested-With": "fetch", "X-Triage-Auto-Refresh": "1" },
    })
      .then(function (answer) {
        if (answer.status === 401) {
          window.location.assign("/login?ended=session"); // the login page says the session ended
          return null;
        }
        if (answer.ok && summary) showRange(answer.headers);
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html !== null) rows.innerHTML = html; // server-rendered and escaped
      })
      .catch(function () { /* keep the rows shown; try again next time */ });
  }
  function showRange(headers) {
    var total = parseInt(headers.get("X-Total-Count"), 10);
    var range = (headers.get("X-Showing") || "").split("-");
    if (isNaN(total) || range.length !== 2) return;
    if (total === 0) summary.textContent = "No escalations match.";
    else if (range[0] === "0") summary.textContent = "This page is past the end: " + total + " escalations match.";
    else summary.textContent = "Showing " + range[0] + "\u2013" + range[1] + " of " + total;
    if (parseInt(range[1], 10) < total && !document.querySelector("a[rel=next]")) {
      summary.textContent += " (more than this page: reload to page through them)";
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
