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
    // The word in the page's language (base.html's <meta name="copied-label">).
    const label = document.querySelector('meta[name="copied-label"]');
    button.setAttribute("aria-label", label ? label.content : "Copied");
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

// --- Keyboard shortcuts: the issue list (tracker) and the issue page ---------------------------
// j / k select the next / previous issue row ([data-issue-row]); Enter or o opens it; / focuses
// the search ([data-shortcut-search]); ? opens the help (<dialog id="shortcut-help">, which
// lists them); on an issue page c focuses the comment box (.comment-form #id_body). Keys are
// ignored while typing in a field, while a dialog is open, and with Ctrl, Alt or Meta held.
(() => {
  const isTyping = (element) =>
    element instanceof Element &&
    (element.closest("input, textarea, select, [contenteditable]:not([contenteditable=false])") !== null);
  const rows = () => Array.from(document.querySelectorAll("[data-issue-row]"));
  const selectedRow = () => document.querySelector("[data-issue-row].is-selected");
  const help = () => document.getElementById("shortcut-help");

  function select(row) {
    const previous = selectedRow();
    if (previous) previous.classList.remove("is-selected");
    row.classList.add("is-selected");
    // Focusing the row's link makes the selection visible to screen readers too, and Enter
    // then opens it natively.
    const link = row.querySelector("[data-issue-link]");
    if (link) link.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = rows();
    if (all.length === 0) return false;
    const index = all.indexOf(selectedRow());
    const next = index === -1 ? 0 : Math.min(Math.max(index + step, 0), all.length - 1);
    select(all[next]);
    return true;
  }

  function openSelected() {
    const link = selectedRow()?.querySelector("[data-issue-link]");
    if (!link) return false;
    link.click();
    return true;
  }

  function focusElement(element) {
    if (!element) return false;
    element.focus();
    if (typeof element.select === "function") element.select();
    return true;
  }

  function showHelp() {
    const dialog = help();
    if (!dialog || dialog.open) return false;
    dialog.showModal();
    return true;
  }

  const actions = {
    j: () => move(1),
    k: () => move(-1),
    o: openSelected,
    // Enter on a focused link or button keeps its own meaning; only a bare page opens the row.
    Enter: () => (document.activeElement === document.body || !document.activeElement) && openSelected(),
    "/": () => focusElement(document.querySelector("[data-shortcut-search]")),
    "?": showHelp,
    c: () => {
      const box = document.querySelector(".comment-form #id_body");
      if (!box) return false;
      box.focus();
      box.scrollIntoView({ block: "center" });
      return true;
    },
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.altKey || event.metaKey) return;
    if (isTyping(event.target) || document.querySelector("dialog[open]")) return;
    const action = actions[event.key];
    // preventDefault only when the key did something: "/" must not type into the search box
    // it just focused, nor "c" into the comment box.
    if (action && action()) event.preventDefault();
  });

  // A row whose link gets focus another way (Tab, a click) becomes the selected one.
  document.addEventListener("focusin", (event) => {
    const row = event.target instanceof Element && event.target.closest("[data-issue-row]");
    if (row && !row.classList.contains("is-selected")) {
      selectedRow()?.classList.remove("is-selected");
      row.classList.add("is-selected");
    }
  });

  // The "Keyboard shortcuts" button exists for those who do not know about "?"; it is hidden
  // in the HTML because without JavaScript there are no shortcuts.
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-shortcut-help]").forEach((button) => { button.hidden = false; });
  });
  document.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest("[data-shortcut-help]")) showHelp();
  });
})();

// Saved replies: <a data-saved-reply="<url>"> in the comment box's menu inserts the reply,
// filled in for this ticket, at the cursor (without JavaScript the link reloads the page with
// the comment box pre-filled).
document.addEventListener("click", async (event) => {
  const link = event.target.closest("[data-saved-reply]");
  if (!link) return;
  const box = link.closest("form")?.querySelector("textarea");
  if (!box) return;
  event.preventDefault();
  const response = await fetch(link.dataset.savedReply, { credentials: "same-origin" });
  if (!response.ok) return;
  const text = await response.text();
  const start = box.selectionStart ?? box.value.length;
  const end = box.selectionEnd ?? box.value.length;
  const before = box.value.slice(0, start);
  const gap = before && !before.endsWith("\n") ? "\n" : "";
  box.value = before + gap + text + box.value.slice(end);
  const caret = (before + gap + text).length;
  box.focus();
  box.setSelectionRange(caret, caret);
  box.dispatchEvent(new Event("input", { bubbles: true }));  // the presence bar: now writing
  link.closest("details")?.removeAttribute("open");
});

// The tracker's filters sit in a <details> folded on phones (tickets first); wider screens
// have room for them, so they are unfolded there and the "Filter" toggle is hidden.
document.addEventListener("DOMContentLoaded", () => {
  if (!window.matchMedia("(min-width: 601px)").matches) return;
  document.querySelectorAll("[data-tracker-filters]").forEach((details) => {
    details.open = true;
    details.classList.add("is-unfolded");
  });
});

// The comment box's mode (Reply to customer / Internal note): CSS :has() restyles the box and
// picks the buttons' words; this class does the same for browsers without :has().
function syncComposerMode(form) {
  const internal = form.querySelector("#composer-mode-internal");
  if (internal) form.classList.toggle("is-internal", internal.checked);
}
document.addEventListener("change", (event) => {
  const form = event.target.closest?.(".comment-form");
  if (form && event.target.name === "internal") syncComposerMode(form);
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".comment-form").forEach(syncComposerMode);
});

// --- Collisions on the issue page --------------------------------------------------------------
// The presence bar (#presence) polls with htmx; this tells its heartbeat whether this member is
// writing (a reply or an internal note) and sends one at once when that changes. A poll that
// brings the same words is not swapped in, so screen readers hear only changes.
(() => {
  const state = document.getElementById("presence-state");
  const body = document.querySelector(".comment-form textarea[name='body']");
  if (!state || !body) return;
  const writing = state.querySelector("input[name='writing']");
  const mode = () => {
    const internal = document.getElementById("composer-mode-internal");
    return internal && internal.checked ? "internal" : "reply";
  };
  const update = () => {
    const next = body.value.trim() ? mode() : "";
    if (next === writing.value) return;
    writing.value = next;
    if (window.htmx) window.htmx.trigger("#presence", "presence-now");
  };
  body.addEventListener("input", update);
  document.addEventListener("change", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.name === "internal") update();
  });
  update();
})();

document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!target || target.id !== "presence") return;
  const incoming = document.createElement("template");
  incoming.innerHTML = event.detail.serverResponse;
  const words = (text) => text.replace(/\s+/g, " ").trim();
  if (words(incoming.content.textContent) === words(target.textContent)) {
    event.detail.shouldSwap = false;
  }
});

// A held reply (the server found new messages): focus the notice; "Edit first" focuses the box.
(() => {
  const hold = document.getElementById("collision-hold");
  if (hold) hold.focus();
})();
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("[data-focus]") : null;
  if (!link) return;
  const target = document.querySelector(link.dataset.focus);
  if (target) {
    event.preventDefault();
    target.focus();
  }
});

// A link to a note of a long thread that the issue page folded (#note-123 where only its
// anchor is): open the whole thread at that note. Without JS the anchor leads to the
// "Show N older notes" link instead.
function unfoldForAnchor() {
  if (!/^#note-\d+$/.test(window.location.hash)) return;
  const target = document.getElementById(window.location.hash.slice(1));
  const unfold = document.querySelector("[data-unfold]");
  if (!target || !target.hasAttribute("data-folded-note") || !unfold) return;
  const url = new URL(unfold.href);
  url.hash = window.location.hash;
  window.location.replace(url.toString());
}
window.addEventListener("hashchange", unfoldForAnchor);
document.addEventListener("DOMContentLoaded", unfoldForAnchor);
