// The connection check screen (R-DEV); the logic is shared with /check in devicecheck.js.
// A failed check shows the hotline (R-FALLBACK-1).

import { checkClient, levelMeter, runCheck } from "/static/js/devicecheck.js";
import { $, api, el, i18n, say, t, words } from "./ui.js";

let checking = false;
let checkCall = null;
let stopLevel = () => {};

export function prepareCheck() {
  const chosen = document.querySelector('input[name="channel"]:checked')?.value || "video";
  if (!checking) for (const input of document.querySelectorAll('input[name="check-channel"]')) input.checked = input.value === chosen;
}

function checkPreview(stream) {
  stopLevel();
  $("check-preview").closest(".preview").hidden = !stream;
  $("check-preview").srcObject = stream;
  stopLevel = stream ? levelMeter(stream, (level) => { $("check-level").value = level; }) : () => {};
}

function renderVerdict(verdict) {
  const names = words().check.names;
  $("check-list").replaceChildren(...verdict.checks.map((check) => el("li", { "data-check": check.name, "data-ok": String(check.ok) },
    el("strong", {}, `${names[check.name] || check.name}: `),
    el("span", { class: "mark" }, check.ok ? `✓ ${t("check.pass")}` : `✗ ${t("check.failed")}`),
    el("div", {}, `${t("check.actual")}: ${check.actual}. ${t("check.required")}: ${check.required}.`),
    check.advice ? el("p", { class: "advice" }, check.advice) : null)));
  const result = $("check-result");
  result.dataset.verdict = verdict.ok ? "ok" : "fail";
  result.hidden = false;
  $("check-hotline").hidden = verdict.ok; // R-FALLBACK-1
  $("check-verdict").textContent = verdict.ok ? t("check.ok") : t("check.fail");
  $("check-verdict").focus();
}

document.querySelector('[data-testid="check-run"]').addEventListener("click", async (event) => {
  if (checking) return;
  const button = event.currentTarget;
  const channel = document.querySelector('input[name="check-channel"]:checked').value;
  checking = true;
  button.disabled = true;
  $("check-result").hidden = true;
  $("check-hotline").hidden = true;
  delete $("check-result").dataset.verdict;
  say("");
  try {
    const { verdict } = await runCheck(checkClient(api.session.token), {
      channel,
      lang: i18n.lang,
      say: (key, vars) => { $("check-status").textContent = t(`check.${key}`, vars); },
      onStream: checkPreview,
      onCall: (id) => { checkCall = id; },
    });
    $("check-status").textContent = "";
    renderVerdict(verdict);
    // The home screen starts with the channel just checked.
    for (const input of document.querySelectorAll('input[name="channel"]')) input.checked = input.value === channel;
  } catch (error) {
    $("check-status").textContent = t("check.error", { message: error.message });
    $("check-hotline").hidden = false;
  } finally {
    checking = false;
    button.disabled = false;
    button.dataset.i18n = "check.again";
    button.textContent = t("check.again");
  }
});

addEventListener("pagehide", () => {
  if (checkCall && api.session) checkClient(api.session.token).forget(checkCall);
});

document.querySelector('[data-testid="check-continue"]').addEventListener("click", () => { location.hash = "home"; });
