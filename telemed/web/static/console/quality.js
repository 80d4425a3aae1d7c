// Call quality by leg (issue 17): the summaries both sides' pages sent for each leg of the
// consultation on screen (GET /consultations/{id}/quality), refreshed every few seconds
// while it is open: path, median round trip, loss, bitrate, freezes.

import { el } from "/static/js/dom.js";
import { $, api, on, t } from "./state.js";

const REFRESH_MS = 5000;
let current = null;
let timer = null;

async function refresh() {
  const id = current;
  if (!id) return;
  let items = [];
  try {
    items = (await api.get(`/consultations/${id}/quality`)).items || [];
  } catch (err) {
    console.info("quality: not read", err?.code || err);
    return;
  }
  if (id !== current) return;
  const list = $("quality-legs");
  list.replaceChildren(
    ...items.map((q) =>
      el(
        "li",
        {
          "data-testid": "quality-leg",
          "data-leg-role": q.leg_role,
          "data-reporter": q.reporter_role,
          "data-path": q.path,
          "data-loss": String(q.loss_percent),
          "data-seconds": String(q.seconds),
        },
        el("strong", {}, `${t("quality_legs.leg", { leg: t(`roles.${q.leg_role}`), who: t(`roles.${q.reporter_role}`) })}: `),
        t("quality_legs.line", {
          path: t(`quality_legs.${q.path}`),
          rtt: q.median_rtt_ms === null ? "—" : Math.round(q.median_rtt_ms),
          loss: Number(q.loss_percent).toFixed(1),
          kbps: Math.round(q.bitrate_kbps),
          freezes: q.freezes,
          seconds: q.seconds,
        }),
      ),
    ),
  );
  if (!items.length) list.append(el("li", { class: "muted" }, t("quality_legs.empty")));
  $("quality-summary").hidden = false;
}

on("current", (p) => {
  const id = p?.consultation_id || null;
  if (id === current) return;
  current = id;
  clearInterval(timer);
  timer = null;
  $("quality-legs").replaceChildren();
  $("quality-summary").hidden = true;
  if (!id) return;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
});
