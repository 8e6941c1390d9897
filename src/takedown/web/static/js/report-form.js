// The report form's "I have the image: hash it here" option.
//
// The reporter picks one or more images. Each is hashed on this device by hash-worker.js
// (MD5 of the bytes, PDQ of the pixels and its 8 rotations/mirror images) and only the
// hashes are added to the form, as hidden fields named "hashes". The file input has no
// name, so the browser never includes the file in the form; the page's CSP has
// connect-src 'none', so no script on it can send anything by fetch or XHR either.
// The list shows exactly what will be sent. Nothing here runs without JavaScript: the
// page then says so and the address fields work as before.

import { DIHEDRAL_NAMES, hashInWorker } from "./hash-worker.js";

const MAX_FILES = 20;
const STAGE_TEXT = { reading: "Reading", decoding: "Decoding", hashing: "Hashing" };

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function describe(entry) {
  // What will be sent for one file, in words and in full.
  const item = el("li", { class: "hash-entry" });
  const title = el("p", { class: "hash-title" });
  title.append(el("strong", {}, entry.label));
  if (entry.label) title.append(" – ");
  title.append("we will send these hashes, not the image:");
  item.append(title);
  const facts = el("dl", { class: "facts hash-facts" });
  facts.append(el("dt", {}, "MD5"), el("dd", {}, ""));
  facts.lastChild.append(el("code", { class: "hash-md5" }, entry.value.md5));
  facts.append(el("dt", {}, "PDQ"), el("dd", {}, ""));
  facts.lastChild.append(el("code", { class: "hash-pdq" }, entry.value.pdq));
  item.append(facts);
  const remove = el("button", { type: "button", class: "button button--secondary" }, "Remove");
  remove.setAttribute("aria-label", `Remove the hashes of ${entry.label || "this image"}`);
  remove.addEventListener("click", () => {
    entry.input.remove();
    item.remove();
  });
  item.append(remove);
  return item;
}

function setUp(root) {
  const picker = root.querySelector("#hash-file");
  const list = root.querySelector("#hash-list");
  const status = root.querySelector("#hash-status");
  const progress = root.querySelector("#hash-progress");
  const form = root.closest("form");
  root.querySelector("[data-needs-js]").hidden = false;

  // Hashes the server echoed back after a validation error: list them too.
  for (const input of form.querySelectorAll('input[type="hidden"][name="hashes"]')) {
    try {
      list.append(describe({ label: "", value: JSON.parse(input.value), input }));
    } catch {
      input.remove();
    }
  }

  picker.addEventListener("change", async () => {
    const files = Array.from(picker.files || []);
    picker.disabled = true;
    try {
      for (const file of files) {
        if (form.querySelectorAll('input[name="hashes"]').length >= MAX_FILES) {
          status.textContent = `At most ${MAX_FILES} images per report.`;
          break;
        }
        progress.hidden = false;
        progress.value = 0;
        status.textContent = `Hashing ${file.name} on this device…`;
        try {
          const result = await hashInWorker(file, {
            onProgress: ({ stage, loaded, total }) => {
              progress.value = total ? Math.round((100 * loaded) / total) : 0;
              status.textContent = `${STAGE_TEXT[stage] || stage} ${file.name} on this device…`;
            },
          });
          const value = {
            md5: result.md5,
            pdq: result.pdq,
            pdq_quality: result.quality,
            dihedral: DIHEDRAL_NAMES.map((name) => result.dihedral[name]),
          };
          const input = el("input", { type: "hidden", name: "hashes" });
          input.value = JSON.stringify(value);
          form.append(input);
          list.append(describe({ label: file.name, value, input }));
          status.textContent = `Done: ${file.name} was hashed on this device. It was not sent.`;
        } catch (error) {
          status.textContent = `${file.name}: ${error.message || "it could not be hashed."}`;
        }
      }
    } finally {
      progress.hidden = true;
      picker.value = ""; // forget the picked files; only the hashes stay in the form
      picker.disabled = false;
    }
  });
}

const root = document.getElementById("hash-here");
if (root) setUp(root);
