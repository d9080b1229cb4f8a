// Classic (blocking) script: set the theme before the first paint, so a dark
// page never flashes white. The toggle itself lives in app.js.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("sluiceway.theme"); } catch (e) { /* storage disabled */ }
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
