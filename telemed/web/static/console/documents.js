// Documents in the console (R-DOCS-1): the consultation's documents for staff allowed to read
// them; images and PDF open in an in-page viewer (an object URL of the authenticated
// fetch), anything else downloads. The server audits every read.

import { el } from "/static/js/dom.js";
import { $, api, on, s, showError, t } from "./state.js";

const VIEWABLE = /^(image\/(png|jpeg|gif|webp)|application\/pdf)$/;
let objectUrl = null;

/** Fetch a document's bytes with the console's bearer token (an <img src> could not send it). */
async function fetchContent(documentId) {
  const response = await fetch(`/api/v1/documents/${documentId}/content`, {
    headers: { Authorization: `Bearer ${api.session?.token}` },
    cache: "no-store",
  });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const err = new Error(data?.error?.message || response.statusText);
    err.code = data?.error?.code || `http_${response.status}`;
    throw err;
  }
  return response.blob();
}

export async function openDocument(doc, errorNode = $("viewer-error")) {
  showError(errorNode, null);
  try {
    const blob = await fetchContent(doc.document_id);
    const type = doc.content_type || blob.type;
    release();
    objectUrl = URL.createObjectURL(new Blob([blob], { type }));
    if (VIEWABLE.test(type)) show(doc, type);
    else download(doc);
  } catch (err) {
    showError(errorNode, err);
  }
}

function show(doc, type) {
  const body = $("viewer-body");
  const view = type === "application/pdf"
    ? el("iframe", { src: objectUrl, title: doc.filename, "data-testid": "viewer-pdf" })
    : el("img", { src: objectUrl, alt: doc.filename, "data-testid": "viewer-image" });
  body.replaceChildren(view);
  $("viewer-title").textContent = doc.filename;
  $("viewer-download").onclick = () => download(doc);
  $("viewer").showModal();
}

function download(doc) {
  const a = el("a", { href: objectUrl, download: doc.filename });
  document.body.append(a);
  a.click();
  a.remove();
}

function release() {
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = null;
}

$("viewer").addEventListener("close", () => {
  $("viewer-body").replaceChildren();
  release();
});

/** A list of documents with an "open" button each. */
export function documentList(docs, errorNode) {
  return docs.map((doc) => {
    const open = el("button", { type: "button", "data-testid": "document-open", "aria-label": t("documents.open_label", { name: doc.filename }), text: t("documents.open") });
    open.addEventListener("click", () => openDocument(doc, errorNode));
    return el("li", { class: "doc-item", "data-testid": "console-document", "data-document-id": doc.document_id }, el("span", { class: "doc-name", text: doc.filename }), open);
  });
}

async function loadConsultationDocuments(p) {
  const panel = $("documents-panel");
  if (!p) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  showError($("documents-error"), null);
  try {
    const data = await api.get(`/consultations/${p.consultation_id}/documents`);
    if (s.current?.consultation_id !== p.consultation_id) return;
    const docs = data.documents || data.items || [];
    $("documents-empty").hidden = docs.length > 0;
    $("documents-list").replaceChildren(...documentList(docs, $("documents-error")));
  } catch (err) {
    showError($("documents-error"), err);
  }
}

let loadedFor = null;
on("current", (p) => {
  if (p?.consultation_id === loadedFor) return;
  loadedFor = p?.consultation_id || null;
  loadConsultationDocuments(p);
});
on("documents-changed", () => s.current && loadConsultationDocuments(s.current));
