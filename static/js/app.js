// Service Desk: small progressive enhancements. No inline scripts anywhere (the
// Content-Security-Policy forbids them): behaviour lives here and in htmx attributes.
"use strict";

// htmx requests carry the CSRF token from the <meta name="csrf-token"> tag.
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector('meta[name="csrf-token"]');
  if (token) event.detail.headers["X-CSRFToken"] = token.content;
});

// Copy buttons: <button data-copy="#element-id">Copy</button>
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.dataset.copied = "true";
    button.setAttribute("aria-label", "Copied");
    setTimeout(() => { delete button.dataset.copied; button.removeAttribute("aria-label"); }, 2000);
  } catch (error) {
    // Clipboard refused (insecure origin): select the text so Ctrl-C works.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});
