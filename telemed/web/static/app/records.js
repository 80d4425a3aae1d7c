// The calendar (R-CONCL-1, R-CAL-1), its secret iCalendar feed, and "My records".

import { $, act, api, confirmThen, el, explain, say, t, when, whenZ, words, zoneName } from "./ui.js";

export function conclusionBlock(summary) {
  return el("div", { class: "conclusion", testid: "conclusion" },
    el("p", {}, el("strong", {}, `${t("calendar.conclusion")}: `), summary.text),
    summary.recommendations ? el("p", {}, el("strong", {}, `${t("calendar.recommendations")}: `), summary.recommendations) : null,
    summary.doctor_name ? el("p", { class: "hint" }, `${t("calendar.doctor")}: ${summary.doctor_name}`) : null);
}

/** The server's title, without the "cancelled" it starts with: the status mark says it once. */
function eventTitle(event) {
  return event.status === "cancelled" ? event.title.replace(/^Отменено\.\s*/u, "") : event.title;
}

export async function loadCalendar() {
  try {
    const calendar = await api.get("/calendar");
    $("calendar-zone").textContent = t("calendar.zone", { zone: zoneName() });
    const list = $("calendar");
    const events = [...calendar.events].sort((a, b) => b.starts_at.localeCompare(a.starts_at));
    if (!events.length) return list.replaceChildren(el("li", { class: "empty" }, t("calendar.none")));
    const stateWords = words().state;
    list.replaceChildren(...events.map((event) => el("li", { testid: "calendar-event", "data-type": event.type, "data-status": event.status },
      el("strong", {}, `${when(event.starts_at)} – ${whenZ(event.ends_at, { timeStyle: "short" })}`),
      el("p", {}, `${eventTitle(event)} · `, el("span", { class: `status status-${event.status}`, testid: "event-status" }, stateWords[event.status] || event.status)),
      event.conclusion ? conclusionBlock(event.conclusion) : null)));
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}

// The secret iCalendar feed (R-CAL-1): the server keeps only its hash, so the link is shown
// once, right after it is made; a new one replaces it, and it can be turned off.

export function showFeed(feed) {
  $("feed-box").hidden = !feed;
  $("feed-url").value = feed?.url || "";
  if (feed) $("feed-webcal").href = feed.webcal_url;
  const create = document.querySelector('[data-testid="feed-create"]');
  create.dataset.i18n = feed ? "feed.rotate" : "feed.create";
  create.textContent = t(create.dataset.i18n);
}

document.querySelector('[data-testid="feed-create"]').addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    showFeed(await api.post("/calendar/feed"));
    $("feed-status").textContent = t("feed.created");
    $("feed-url").focus();
    $("feed-url").select();
  });
});

document.querySelector('[data-testid="feed-copy"]').addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("feed-url").value);
    $("feed-status").textContent = t("feed.copied");
  } catch {
    $("feed-url").select();
    $("feed-status").textContent = t("feed.copy_failed");
  }
});

document.querySelector('[data-testid="feed-revoke"]').addEventListener("click", (event) => {
  confirmThen(event.currentTarget, t("feed.revoke_confirm"), async () => {
    await api.delete("/calendar/feed");
    showFeed(null);
    $("feed-status").textContent = t("feed.revoked");
  });
});

/** The consultant's record after the doctor (R-URG-5): the services arranged and the outcome. */
function followUpBlock(followUp) {
  const w = words().follow_up;
  const needs = followUp.needs.map((need) => w.need[need] || need).join(", ");
  return el("div", { class: "follow-up", testid: "record-follow-up" },
    el("p", {}, el("strong", {}, `${t("records.follow_up")}: `), needs),
    el("p", {}, `${t("records.outcome")}: ${w.outcome[followUp.outcome] || followUp.outcome}`),
    followUp.note ? el("p", {}, followUp.note) : null);
}

export async function loadRecords() {
  try {
    const { items } = await api.get("/records");
    const list = $("records");
    if (!items.length) return list.replaceChildren(el("li", { class: "empty" }, t("records.none")));
    const stateWords = words().state;
    list.replaceChildren(...items.map((record) => {
      const item = el("li", { testid: "record", "data-consultation-id": record.consultation_id },
        el("strong", {}, whenZ(record.created_at)),
        el("p", {}, `${words().kind[record.kind] || record.kind} · ${t(`channel.${record.channel}`)} · ${stateWords[record.close_reason] || stateWords[record.state] || record.state}`));
      if (record.conclusion_id) {
        const button = el("button", { type: "button", testid: "record-conclusion" }, t("records.show"));
        button.addEventListener("click", () => act(button, async () => {
          const conclusion = await api.get(`/conclusions/${record.conclusion_id}`);
          button.replaceWith(conclusionBlock(conclusion));
        }));
        item.append(button);
      } else {
        item.append(el("p", { class: "hint" }, t("records.no_conclusion")));
      }
      if (record.follow_up) item.append(followUpBlock(record.follow_up));
      return item;
    }));
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}
