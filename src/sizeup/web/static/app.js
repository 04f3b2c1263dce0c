// sizeup page: keep the job in the URL (drop empty fields), POST only when a config.json is pasted.
(function () {
  var form = document.getElementById("job");
  if (form) {
    form.addEventListener("submit", function () {
      var config = document.getElementById("f-config");
      var pasted = config && config.value.trim().length > 0;
      form.method = pasted ? "post" : "get";
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.value && el.type !== "hidden") { el.disabled = true; }  // not sent: a clean URL
        if (el.name === "config" && !pasted) { el.disabled = true; }
      });
      setTimeout(function () {  // re-enable for back/forward cache
        Array.prototype.forEach.call(form.elements, function (el) { el.disabled = false; });
      }, 0);
    });
  }
  var all = document.getElementById("explain-all");
  if (all) {
    all.addEventListener("click", function () {
      var open = all.textContent === "open all";
      document.querySelectorAll("#explain details").forEach(function (d) { d.open = open; });
      all.textContent = open ? "close all" : "open all";
    });
  }
  var err = document.querySelector(".err");
  if (err) {
    var field = err.previousElementSibling && err.previousElementSibling.querySelector("input, select, textarea");
    if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
  }
})();
