// Progressive enhancement only: every page works without this file. A changed facet or sort
// submits the search form at once (without JavaScript, the "Apply filters" button does).
document.addEventListener("change", function (event) {
  var field = event.target;
  if (field instanceof HTMLElement && field.hasAttribute("data-autosubmit") && field.form) {
    field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
  }
});
