// Progressive enhancement only: every page works without this file. A changed facet or sort
// submits the search form at once (without JavaScript, the "Apply filters" button does).
document.addEventListener("change", function (event) {
  var field = event.target;
  if (field instanceof HTMLElement && field.hasAttribute("data-autosubmit") && field.form) {
    field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
  }
});

// On a phone the filters start folded (unless one is chosen), so the results come first;
// without this file they stay open. The summary opens them, by keyboard too.
document.addEventListener("DOMContentLoaded", function () {
  var filters = document.querySelector("details[data-collapse-narrow]");
  if (filters && window.matchMedia("(max-width: 47.99rem)").matches &&
      !filters.querySelector("input:checked")) {
    filters.open = false;
  }
});
