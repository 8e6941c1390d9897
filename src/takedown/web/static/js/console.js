// The review console's one script: reveal media on click (one item at a time), keyboard
// shortcuts, and the break reminder. No inline script anywhere (CSP script-src 'self');
// every page works without this file except the in-place reveal.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  // -- wellness: blur strength for video (images arrive blurred from the server) --------
  for (const frame of document.querySelectorAll(".frame[data-blur]")) {
    frame.style.setProperty("--blur", `${Number(frame.dataset.blur) || 16}px`);
  }

  // -- reveal one item at a time ------------------------------------------------------------
  let shown = null; // the figure revealed now

  function hide(figure) {
    const full = figure.querySelector(".media.full");
    const preview = figure.querySelector(".media.blurred");
    if (full && full.tagName === "IMG") {
      full.remove();
    } else if (full) { // video: stop it and drop the source
      full.pause();
      full.removeAttribute("src");
      full.load();
      full.classList.remove("full");
      full.classList.add("blurred");
    }
    if (preview) preview.hidden = false;
    const button = figure.querySelector("button.reveal");
    button.textContent = "Reveal";
    button.setAttribute("aria-pressed", "false");
    if (shown === figure) shown = null;
  }

  async function reveal(form) {
    const figure = form.closest("figure");
    if (shown === figure) { hide(figure); return; }
    if (shown) hide(shown);
    const body = new FormData(form);
    const purpose = document.getElementById("purpose");
    if (purpose) body.set("purpose", purpose.value);
    const response = await fetch(form.action, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
    });
    const answer = await response.json();
    if (!response.ok) { window.alert(answer.message || "The media could not be shown."); return; }
    const preview = figure.querySelector(".media.blurred");
    if (form.dataset.kind === "video") {
      const video = figure.querySelector("video");
      video.muted = true;
      video.autoplay = false;
      video.src = answer.url;
      video.classList.remove("blurred");
      video.classList.add("full");
    } else {
      const img = document.createElement("img");
      img.className = "media full";
      img.alt = "Revealed media";
      img.src = answer.url;
      preview.hidden = true;
      preview.after(img);
    }
    const button = form.querySelector("button.reveal");
    button.textContent = "Hide";
    button.setAttribute("aria-pressed", "true");
    shown = figure;
  }

  for (const form of document.querySelectorAll("form.reveal-form")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      reveal(form).catch(() => window.alert("The media could not be shown."));
    });
  }

  function revealNext() {
    const forms = [...document.querySelectorAll("form.reveal-form")];
    if (!forms.length) return;
    const at = shown ? forms.findIndex((f) => f.closest("figure") === shown) : -1;
    const next = forms[(at + 1) % forms.length];
    if (next.closest("figure") === shown) { hide(shown); return; }
    reveal(next).catch(() => {});
  }

  // -- keyboard shortcuts ---------------------------------------------------------------------
  const rows = [...document.querySelectorAll("table.queue tbody tr")];
  let row = -1;
  function selectRow(i) {
    if (!rows.length) return;
    if (row >= 0) rows[row].classList.remove("selected");
    row = Math.max(0, Math.min(rows.length - 1, i));
    rows[row].classList.add("selected");
    rows[row].querySelector("a.case-link").focus();
  }

  function click(id) { const el = document.getElementById(id); if (el) el.click(); }
  function focus(id) { const el = document.getElementById(id); if (el) el.focus(); }

  document.addEventListener("keydown", (event) => {
    // Typing in a text field is typing; on a radio, checkbox or button, keys are shortcuts.
    const typing = event.target.closest(
      "textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=submit])",
    );
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      const form = event.target.closest("form");
      if (form) { event.preventDefault(); form.requestSubmit(); }
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const actions = {
      c: () => click("claim"),
      r: revealNext,
      h: () => { if (shown) hide(shown); },
      d: () => focus("reasons"),
      e: () => {
        const details = document.querySelector("details.escalate");
        if (details) { details.open = true; focus("escalate-note"); }
      },
      j: () => selectRow(row + 1),
      k: () => selectRow(row - 1),
      "?": () => {
        const help = document.getElementById("shortcuts");
        if (help) { help.open = !help.open; help.querySelector("summary").focus(); }
      },
    };
    const radio = document.querySelector(`#decision-form input[data-key="${event.key}"]`);
    if (radio) { event.preventDefault(); radio.checked = true; radio.focus(); return; }
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  });

  // -- break reminder -------------------------------------------------------------------------------
  const reminder = document.getElementById("break-reminder");
  if (reminder) {
    const next = document.getElementById("break-next");
    if (next) next.value = location.pathname + location.search.replace(/[?&]notice=[a-z]+/, "");
    const wait = Date.parse(reminder.dataset.due) - Date.now();
    if (wait > 0 && wait < 2 ** 31 - 1) {
      setTimeout(() => { reminder.hidden = false; }, wait);
    }
  }
})();
