/* Save each answer of a participant-form page as it is given (progressive enhancement: without
   JavaScript, "Save my answers for later" and "Save and continue" do the same by posting the form). */
(function () {
  "use strict";
  var pending = null;
  function save(form) {
    var data = new FormData(form);
    data.set("action", "draft");
    var status = document.getElementById("autosave-status");
    // form.action would be the buttons named "action": read the attribute itself.
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: new URLSearchParams(data),
      headers: { "X-Autosave": "1" },
      credentials: "same-origin"
    }).then(function (r) {
      if (status) { status.textContent = r.status === 204 ? "Your answers are saved." : ""; }
    }).catch(function () {
      if (status) { status.textContent = ""; }
    });
  }
  document.addEventListener("change", function (event) {
    var form = event.target && event.target.form;
    if (!form || !form.hasAttribute("data-autosave")) { return; }
    clearTimeout(pending);
    pending = setTimeout(function () { save(form); }, 150);
  });
})();
