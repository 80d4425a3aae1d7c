// The medical card (R-DOCS-1): upload documents in advance, list them; the second opinion and
// the waiting screen pick from the same card.

import { $, act, el, say, explain, t, api, when } from "./ui.js";

/** Upload files to the card one by one, saying so in `status` (the card's line by default). */
export async function uploadFiles(files, status = $("card-status")) {
  for (const file of files) {
    status.textContent = t("card.uploading");
    const form = new FormData();
    form.append("file", file, file.name);
    await api.upload("/documents", form);
    status.textContent = t("card.uploaded", { name: file.name });
  }
}

$("doc-upload").addEventListener("change", (event) => {
  const input = event.currentTarget;
  act(null, async () => {
    try {
      await uploadFiles(input.files);
    } finally {
      input.value = "";
    }
    await loadCard();
  });
});

export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export async function loadCard() {
  try {
    const { items } = await api.get("/documents");
    const list = $("documents");
    if (!items.length) return list.replaceChildren(el("li", { class: "empty" }, t("card.none")));
    list.replaceChildren(...items.map((doc) => el("li", { testid: "document", "data-document-id": doc.document_id },
      el("strong", {}, doc.filename), el("span", {}, ` · ${size(doc.size)} · ${when(doc.created_at)}`))));
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}
