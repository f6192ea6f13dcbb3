// The playground of an image model: a preview of the chosen image (<input data-preview="#img">).
(function () {
  "use strict";

  let shown = null; // the object URL on display, released when another image is chosen

  document.addEventListener("change", function (event) {
    const input = event.target;
    if (!input.matches || !input.matches("input[type=file][data-preview]")) return;
    const image = document.querySelector(input.dataset.preview);
    if (!image) return;
    if (shown) URL.revokeObjectURL(shown);
    shown = null;
    const file = input.files && input.files[0];
    if (!file || !/^image\//.test(file.type)) {
      image.hidden = true;
      image.removeAttribute("src");
      return;
    }
    shown = URL.createObjectURL(file);
    image.src = shown;
    image.alt = "Preview of " + file.name;
    image.hidden = false;
  });
})();
