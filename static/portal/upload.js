// Dataset uploads with a progress bar. A <form data-upload> is sent with XMLHttpRequest (its
// upload.onprogress moves the form's <progress data-upload-bar>), asking the portal for JSON:
// {ok, message, html, url, table?}. `html` (the outcome: statistics, or the validation report)
// goes into the element named by data-upload-result; `table` replaces #datasets-table; a form
// with data-upload-follow then opens `url`. Without JavaScript the form posts as usual.
(function () {
  "use strict";

  function part(form, name) {
    return form.querySelector("[data-upload-" + name + "]");
  }

  function setState(form, state, text) {
    form.dataset.state = state;
    const status = part(form, "status");
    if (status) status.textContent = text || "";
  }

  function setPercent(form, percent) {
    const bar = part(form, "bar");
    const label = part(form, "percent");
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    if (bar) {
      bar.max = 100;
      bar.value = value;
      bar.setAttribute("aria-valuenow", String(value));
    }
    if (label) label.textContent = value + "%";
    form.dataset.percent = String(value);
  }

  function show(form, html) {
    const target = document.querySelector(form.dataset.uploadResult || "#upload-outcome");
    if (target) target.innerHTML = html || "";
  }

  function answerOf(xhr) {
    try {
      return JSON.parse(xhr.responseText);
    } catch (error) {
      return null;
    }
  }

  function escapeText(text) {
    const holder = document.createElement("span");
    holder.textContent = text;
    return holder.innerHTML;
  }

  function send(form) {
    const box = part(form, "progress");
    const button = form.querySelector("button[type=submit]");
    const token = form.querySelector("input[name=csrfmiddlewaretoken]");
    const xhr = new XMLHttpRequest();

    if (box) box.hidden = false;
    setPercent(form, 0);
    setState(form, "uploading", "Uploading…");
    show(form, "");
    if (button) button.disabled = true;

    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    if (token) xhr.setRequestHeader("X-CSRFToken", token.value);

    xhr.upload.onprogress = function (event) {
      if (event.lengthComputable && event.total > 0) setPercent(form, (100 * event.loaded) / event.total);
    };
    xhr.upload.onload = function () {
      setPercent(form, 100);
      setState(form, "checking", "Uploaded; checking the file…");
    };
    xhr.onload = function () {
      if (button) button.disabled = false;
      const answer = answerOf(xhr);
      if (answer && answer.ok) {
        setPercent(form, 100);
        setState(form, "done", answer.message);
        show(form, answer.html);
        if (answer.table) {
          const table = document.getElementById("datasets-table");
          if (table) table.outerHTML = answer.table;
        }
        form.reset();
        if (form.hasAttribute("data-upload-follow") && answer.url) {
          window.setTimeout(function () { window.location.assign(answer.url); }, 400);
        }
        return;
      }
      const message = answer ? answer.message : "The server answered HTTP " + xhr.status + ".";
      setState(form, "failed", "Refused.");
      show(form, answer && answer.html ? answer.html : '<p class="error" role="alert">' + escapeText(message) + "</p>");
    };
    xhr.onerror = function () {
      if (button) button.disabled = false;
      setState(form, "failed", "The upload did not reach the server; check the connection and try again.");
    };
    xhr.onabort = xhr.onerror;
    xhr.send(new FormData(form));
  }

  document.addEventListener("submit", function (event) {
    const form = event.target.closest ? event.target.closest("form[data-upload]") : null;
    if (!form || !window.XMLHttpRequest || !window.FormData) return;
    if (form.dataset.state === "uploading" || form.dataset.state === "checking") {
      event.preventDefault();
      return;
    }
    event.preventDefault();
    send(form);
  });
})();
