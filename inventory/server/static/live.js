// Live change rows: a table with data-live-changes follows that change stream and adds each row.
// The server renders every row (escaped exactly as the page's own rows); this script only inserts it,
// and the browser's EventSource resumes after a cut with Last-Event-ID, so no row is lost or doubled.
"use strict";
(function () {
  function follow(table) {
    var body = table.tBodies[0];
    var stream = new EventSource(table.getAttribute("data-live-changes"));
    stream.addEventListener("change", function (event) {
      var empty = body.querySelector("tr.empty");
      if (empty) {
        empty.remove();
      }
      // Newest-first tables (the default) take new rows on top.
      var where = table.getAttribute("data-order") === "oldest-first" ? "beforeend" : "afterbegin";
      body.insertAdjacentHTML(where, event.data);
      table.setAttribute("data-live-rows", String(Number(table.getAttribute("data-live-rows") || 0) + 1));
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.EventSource) {
      return;
    }
    document.querySelectorAll("table[data-live-changes]").forEach(follow);
  });
})();
