// Sorts the task table by a column; the page is complete without this.
(function () {
  var table = document.getElementById("tasks");
  if (!table) return;
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    var b = th.querySelector("button");
    if (!b) return;
    b.addEventListener("click", function () {
      var desc = th.getAttribute("aria-sort") !== "descending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (r) {
        var c = r.cells[col];
        var v = c.getAttribute("data-v");
        return v === null ? c.textContent : parseFloat(v);
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var d = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return desc ? -d : d;
      });
      var frag = document.createDocumentFragment();
      rows.forEach(function (r) { frag.appendChild(r); });
      body.appendChild(frag);
    });
  });
  // For bench/timings.sh: how long the page took to parse and lay out.
  void document.body.offsetHeight;
  document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.documentElement.setAttribute("data-js", "ok");
})();
