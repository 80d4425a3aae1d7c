"""The booked flow through the pages only (R-SCH-1, R-SCH-3, R-URG-5, R-CONCL-1, R-CAL-1), in
Debian's Chromium, each person in their own browser context: the consultant books the
therapist for a patient in Asia/Vladivostok from the slot list shown in the patient's zone
and informs them by chat (the patient reads the date, time and zone); at the time, the
patient joins, the consultant transfers them to the booked doctor, who consults and signs
the conclusion; back with the consultant, who sees the recommendations and records the
needs; the patient sees the conclusion in the calendar and the record in "My records".
Also the console's queue model against the deltas of the queue protocol, in the page."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from clinic import THURSDAY
from e2ekit import (
    ADULT,
    ADULT_PHONE,
    DESK,
    PHONE,
    WAIT,
    Person,
    Stage,
    camera_file,
    chromium,
    login_patient,
    login_staff,
    open_stage,
    overflow,
    person,
    screen_is,
    shots,
    unlabelled,
)
from helpers import bearer, patient_token, staff_token
from playwright.async_api import expect
from test_urgent_flow import patient_reaches_home

from telemed.roles import Role

CONCLUSION = "Острый бронхит исключён."
ADVICE = "Общий анализ крови, повторная консультация через неделю."
ZONE = "Asia/Vladivostok"
# The clock starts Thursday 09:00 UTC; the therapist works from 13:00 Moscow = 10:00 UTC,
# which is 20:00 in Vladivostok.
BOOKED_LOCAL = "20:00"


async def console_shots(who: Person, name: str) -> None:
    """Both widths; at each nothing wider than the screen and every control labelled."""
    await shots(who.page, name)
    for width in (PHONE["width"], DESK["width"]):
        await who.page.set_viewport_size({"width": width, "height": DESK["height"]})
        assert await overflow(who.page) <= 0, f"{name} overflows at {width}px"
    await who.page.set_viewport_size(DESK)  # type: ignore[arg-type]
    assert await unlabelled(who.page) == [], name


async def working_hours(stage: Stage, doctor_id: str) -> None:
    """Set-up by the administrator (not a role under test): Thursdays 13:00-17:00 Moscow."""
    admin, _ = await staff_token(stage.app, Role.ADMIN, f"hours-{doctor_id[:12]}")
    resp = await stage.app.client.put(
        f"/api/v1/doctors/{doctor_id}/working-hours",
        json={
            "time_zone": "Europe/Moscow",
            "slot_minutes": 15,
            "hours": [{"weekday": THURSDAY, "starts": "13:00", "ends": "17:00"}],
        },
        headers=bearer(admin),
    )
    assert resp.status == 200, await resp.text()


async def test_booked_by_the_consultant_transferred_through_the_page_and_followed_up(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-SCH-1, R-SCH-3, R-URG-5, R-CONCL-1, R-CAL-1: every step through the pages."""
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    therapist_id = await stage.add_staff(Role.THERAPIST, "boris", "Борис Терапевт")
    await stage.add_staff(Role.THERAPIST, "duty", "Дежурный Терапевт")
    await working_hours(stage, therapist_id)

    async with chromium(camera_file(tmp_path)) as browser:
        consultant = await person(browser, DESK, "consultant")
        therapist = await person(browser, DESK, "therapist")
        patient = await person(browser, PHONE, "patient", timezone_id=ZONE)
        c, d, p = consultant.page, therapist.page, patient.page

        await login_staff(c, stage.url, "anna")
        await login_staff(d, stage.url, "boris")
        await expect(c.locator("#live-state")).to_be_hidden(timeout=WAIT)
        await expect(d.locator("#live-state")).to_be_hidden(timeout=WAIT)

        # The patient (in Vladivostok) sets their zone and calls the consultant (chat).
        await login_patient(p, stage)
        await patient_reaches_home(p)
        await p.get_by_test_id("nav-profile").click()
        await screen_is(p, "profile")
        await p.get_by_test_id("timezone-select").select_option(ZONE)
        await p.get_by_test_id("profile-save").click()
        await expect(p.locator("#profile-saved")).not_to_be_empty(timeout=WAIT)
        await p.get_by_test_id("nav-home").click()
        await screen_is(p, "home")
        await p.get_by_test_id("channel-chat").check()
        await p.get_by_test_id("start-urgent").click()
        await expect(p.get_by_test_id("queue-position")).to_be_visible(timeout=WAIT)

        # The consultant accepts; the tools panel books for this patient from the slot list
        # in the patient's zone, with the zone named (R-SCH-1, R-CAL-1).
        item = c.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await item.get_by_test_id("accept").click()
        await expect(c.get_by_test_id("consultation-state")).to_have_text(
            "с консультантом", timeout=WAIT
        )
        await expect(c.get_by_test_id("book-form")).to_be_visible(timeout=WAIT)
        await expect(c.get_by_test_id("book-zone")).to_contain_text(ZONE, timeout=WAIT)
        slot = c.get_by_test_id("book-slot").first
        await expect(slot).to_have_attribute(
            "aria-label", f"{_date_ru()}, {BOOKED_LOCAL} ({ZONE}) — Борис Терапевт", timeout=WAIT
        )
        await slot.check()
        await c.get_by_test_id("book-notify").select_option("chat")
        await c.get_by_test_id("book-documents").check()  # R-DOCS-1: an X-ray is needed
        await console_shots(consultant, "console-booking")
        await c.get_by_test_id("book-submit").click()
        await expect(c.get_by_test_id("tools-status")).to_have_attribute(
            "data-informing", "done", timeout=WAIT
        )
        day_item = c.get_by_test_id("day-item")
        await expect(day_item).to_have_count(1, timeout=WAIT)
        await expect(day_item.get_by_test_id("informing")).to_have_attribute(
            "data-informing", "done"
        )
        await console_shots(consultant, "console-day")

        # The patient reads the date, the time and the zone in the chat.
        told = p.get_by_test_id("chat-message").last
        await expect(told).to_contain_text(f"в {BOOKED_LOCAL} по времени {ZONE}", timeout=WAIT)
        await expect(told).to_contain_text("15.01.2026")
        await shots(p, "patient-chat-booked")

        # The consultant closes this call (the outcome: booked).
        await c.get_by_test_id("close-consultation").click()
        await c.get_by_test_id("confirm-yes").click()
        await expect(c.get_by_test_id("work-handed")).to_contain_text("завершена", timeout=WAIT)
        await screen_is(p, "home")

        # At the time: the reminder, the patient joins; the queue shows the booking.
        stage.app.clock.advance(timedelta(minutes=52))
        await stage.tick()
        await p.get_by_test_id("reminder").get_by_test_id("reminder-join").click(timeout=WAIT)
        await screen_is(p, "waiting")
        xray = tmp_path / "xray.png"
        xray.write_bytes(_png())
        await p.get_by_test_id("waiting-doc-upload").set_input_files(str(xray))
        await expect(p.get_by_test_id("doc-choice")).to_have_count(1, timeout=WAIT)
        await p.get_by_test_id("attach-documents").click()
        await expect(p.get_by_test_id("documents-added")).to_be_visible(timeout=WAIT)
        await expect(item).to_have_count(1, timeout=WAIT)
        await expect(item.get_by_test_id("queue-appointment")).to_contain_text(
            "Борис Терапевт", timeout=WAIT
        )
        await item.get_by_test_id("accept").click()

        # R-SCH-3: the booked doctor first (name, time), the duty doctor as the alternative.
        booked = c.get_by_test_id("transfer-booked-doctor")
        await expect(booked).to_be_visible(timeout=WAIT)
        await expect(booked).to_contain_text("Борис Терапевт")
        await expect(c.get_by_test_id("transfer-duty-doctor")).to_have_text(
            "Вместо этого — дежурному врачу"
        )
        first = await c.locator("#actions button:not([hidden])").first.get_attribute("data-testid")
        assert first == "transfer-booked-doctor"
        await console_shots(consultant, "console-booked-transfer")
        await booked.click()
        await expect(c.get_by_test_id("work-handed")).to_be_visible(timeout=WAIT)

        # The booked therapist sees the patient with the appointment, consults, ends, signs.
        d_item = d.get_by_test_id("queue-item")
        await expect(d_item).to_have_count(1, timeout=WAIT)
        await expect(d_item.get_by_test_id("queue-appointment")).to_be_visible(timeout=WAIT)
        await console_shots(therapist, "console-doctor-booked-queue")
        await d_item.get_by_test_id("accept").click()
        await expect(d.get_by_test_id("consultation-state")).to_have_text("у врача", timeout=WAIT)
        # R-DOCS-1: the doctor opens the patient's X-ray in the console's viewer.
        document = d.get_by_test_id("documents-panel").get_by_test_id("console-document")
        await expect(document).to_have_count(1, timeout=WAIT)
        await document.get_by_test_id("document-open").click()
        image = d.get_by_test_id("viewer-image")
        await expect(image).to_be_visible(timeout=WAIT)
        assert await image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 8
        await console_shots(therapist, "console-viewer-consultation")
        await d.get_by_test_id("viewer-close").click()
        await expect(d.get_by_test_id("viewer")).to_be_hidden()
        await d.get_by_test_id("chat-input").fill("Здравствуйте, я ваш терапевт.")
        await d.get_by_test_id("chat-send").click()
        await expect(p.get_by_test_id("chat-message").last).to_contain_text(
            "я ваш терапевт", timeout=WAIT
        )
        await d.get_by_test_id("end-leg").click()
        await d.get_by_test_id("confirm-yes").click()
        await expect(d.get_by_test_id("conclusion-text")).to_be_visible(timeout=WAIT)

        # Back with the consultant: the draft's state, then the signed recommendations.
        panel = c.get_by_test_id("followup-panel")
        await expect(panel).to_be_visible(timeout=WAIT)
        await expect(c.get_by_test_id("followup-advice")).to_have_attribute(
            "data-conclusion", "none", timeout=WAIT
        )
        await d.get_by_test_id("conclusion-text").fill(CONCLUSION)
        await d.get_by_test_id("conclusion-recommendations").fill(ADVICE)
        await d.get_by_test_id("conclusion-sign").click()
        await expect(d.get_by_test_id("conclusion-status")).to_have_attribute(
            "data-status", "signed", timeout=WAIT
        )
        await expect(c.get_by_test_id("followup-recommendations")).to_have_text(
            ADVICE, timeout=WAIT
        )
        await expect(c.get_by_test_id("transfer-booked-doctor")).to_be_hidden()  # seen
        # R-URG-5: the needs and the outcome, recorded with the consultation.
        await c.get_by_test_id("followup-need").and_(c.locator('[value="tests"]')).check()
        await c.get_by_test_id("followup-outcome").select_option("finished")
        await c.get_by_test_id("followup-note").fill("Направление на анализ крови.")
        await c.get_by_test_id("followup-save").click()
        await expect(c.get_by_test_id("followup-status")).to_have_attribute(
            "data-status", "saved", timeout=WAIT
        )
        await console_shots(consultant, "console-followup")
        await c.get_by_test_id("close-consultation").click()
        await c.get_by_test_id("confirm-yes").click()
        await expect(c.get_by_test_id("work-handed")).to_contain_text("завершена", timeout=WAIT)

        # The patient: the conclusion in the calendar, the records with the follow-up.
        await screen_is(p, "home")
        await p.get_by_test_id("nav-calendar").click()
        await screen_is(p, "calendar")
        await expect(p.get_by_test_id("conclusion").first).to_contain_text(CONCLUSION, timeout=WAIT)
        await p.get_by_test_id("nav-records").click()
        await screen_is(p, "records")
        await expect(p.get_by_test_id("record")).to_have_count(2, timeout=WAIT)
        # R-URG-5: the consultant's record after the doctor, in the patient's own words.
        follow_up = p.get_by_test_id("record-follow-up")
        await expect(follow_up).to_have_count(1, timeout=WAIT)
        await expect(follow_up).to_contain_text("анализы и обследования")
        await expect(follow_up).to_contain_text("консультация завершена")
        await expect(follow_up).to_contain_text("Направление на анализ крови.")
        for who in (consultant, therapist, patient):
            assert not [e for e in who.errors if "rtc:" not in e], who.errors


def _date_ru() -> str:
    """The booked day as ru-RU `dateStyle: medium` writes it."""
    return "15 янв. 2026 г."


QUEUE_MODEL = """async () => {
  const { createQueue } = await import('/static/console/queue_model.js');
  const at = (s) => new Date(Date.parse('2026-01-15T09:00:00Z') + s * 1000).toISOString();
  const item = (id, s, extra = {}) => ({consultation_id: id, queued_at: at(s),
    patient_name: id, waited_seconds: 0, ...extra});
  const me = 'doc-1';
  const q = createQueue({mine: (i) => !i.target_doctor_id || i.target_doctor_id === me});
  const ids = () => q.list().map((i) => `${i.position}:${i.consultation_id}`).join(' ');
  const out = {};
  q.replace([item('b', 20), item('a', 10), item('x', 5, {target_doctor_id: 'doc-2'})], at(60));
  out.snapshot = ids();
  out.waitedA = Math.round(q.waited(q.list()[0]));
  out.joinedNew = q.join(item('c', 15), at(61));
  out.joinedAgain = q.join(item('c', 15), at(61));
  out.afterJoin = ids();
  q.change({consultation_id: 'b', device_check: {ok: true}}, at(62));
  out.changed = q.list().find((i) => i.consultation_id === 'b').device_check.ok;
  out.changedKeepsName = q.list().find((i) => i.consultation_id === 'b').patient_name;
  out.left = q.leave('a', at(63)).consultation_id;
  out.leftUnknown = q.leave('zzz', at(63));
  out.afterLeave = ids();
  out.notMine = q.join(item('y', 1, {target_doctor_id: 'doc-2'}), at(64));
  q.replace([item('d', 30, {waited_seconds: 90})]);  // v1 queue:update: no server_time
  out.v1 = ids();
  out.waitedV1 = Math.round(q.waited(q.list()[0]));
  return out;
}"""


async def test_the_console_queue_applies_snapshots_and_deltas(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """The queue protocol (docs/console.md): snapshots replace, joined/changed/left edit,
    a doctor keeps only items for no doctor or for them, order is (queued_at, id), waits
    come from queued_at and the server's clock, with or without server_time (v1)."""
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    async with chromium(camera_file(tmp_path)) as browser:
        page = (await person(browser, DESK, "console")).page
        await page.goto(f"{stage.url}/console")
        out = await page.evaluate(QUEUE_MODEL)
    assert out["snapshot"] == "1:a 2:b"
    assert out["waitedA"] == 50
    assert out["joinedNew"] is True and out["joinedAgain"] is False
    assert out["afterJoin"] == "1:a 2:c 3:b"
    assert out["changed"] is True and out["changedKeepsName"] == "b"
    assert out["left"] == "a" and out["leftUnknown"] is None
    assert out["afterLeave"] == "1:c 2:b"
    assert out["notMine"] is False
    assert out["v1"] == "1:d" and out["waitedV1"] == 90


def _console_keys() -> set[str]:
    """The literal keys the console asks for: t("...") in its modules, data-i18n in its page."""
    import re

    web = Path(__file__).resolve().parents[2] / "telemed" / "web"
    keys: set[str] = set()
    for module in (web / "static" / "console").glob("*.js"):
        text = module.read_text()
        keys |= set(re.findall(r'\bt\("([a-z_.]+)"', text))
        for pair in re.findall(r'\bt\([^()"]*\?\s*"([a-z_.]+)"\s*:\s*"([a-z_.]+)"', text):
            keys |= set(pair)  # t(cond ? "a" : "b")
    keys |= set(re.findall(r'data-i18n="([a-z_.]+)"', (web / "console.html").read_text()))
    return keys


def _error_codes() -> set[str]:
    """Every error code the server can answer with (each TelemedError subclass's code)."""
    import conclusions.http  # noqa: F401  (the modules that define errors, loaded)
    import signalling.server  # noqa: F401
    import telemed.app
    import telemed.services.staff  # noqa: F401
    from telemed.errors import TelemedError

    found: set[str] = set()
    todo = [TelemedError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found - {"error"}


async def test_every_error_code_has_console_words_in_both_languages(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 12: the console speaks its language: every key it uses has Russian and English
    words, every server error code maps to a console string in both (the documents error
    and the under-1-year refusal were shown in English in the Russian console); an unknown
    code gets a generic line."""
    codes = sorted(_error_codes())
    assert {"documents_required", "not_eligible", "chat_needs_consultation"} <= set(codes)
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    async with chromium(camera_file(tmp_path)) as browser:
        page = (await person(browser, DESK, "console")).page
        await page.goto(f"{stage.url}/console")
        missing = await page.evaluate(
            """async (codes) => {
              const { STRINGS } = await import('/static/console/strings.js');
              return ['ru', 'en'].flatMap((lang) =>
                codes.filter((c) => typeof STRINGS[lang].errors[c] !== 'string')
                     .map((c) => `${lang}:${c}`));
            }""",
            codes,
        )
        assert missing == []
        untranslated = await page.evaluate(
            """async (keys) => {
              const { STRINGS, } = await import('/static/console/strings.js');
              const { CALL_STRINGS } = await import('/static/js/call.js');
              const walk = (dict, key) => key.split('.')
                .reduce((n, part) => (n && typeof n === 'object' ? n[part] : undefined), dict);
              const has = (dict, key) =>
                typeof dict[key] === 'string' || typeof walk(dict, key) === 'string';
              return ['ru', 'en'].flatMap((lang) => keys
                .filter((k) => !has(STRINGS[lang], k) && !has(CALL_STRINGS[lang], k))
                .map((k) => `${lang}:${k}`));
            }""",
            sorted(_console_keys()),
        )
        assert untranslated == []
        words = await page.evaluate(
            """async () => {
              const { errorText } = await import('/static/console/state.js');
              return [errorText({code: 'not_eligible'}), errorText({code: 'no_such_code'})];
            }"""
        )
    assert words[0].startswith("Пациентов младше 1 года")
    assert words[1] == "Не получилось (no_such_code)"


async def test_cancellations_and_no_shows_show_on_the_consoles_list(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-CANCEL-1, R-NOSHOW-1: the consultant's day list marks an appointment the patient
    cancelled and one they did not come to, as the live events arrive."""
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    therapist_id = await stage.add_staff(Role.THERAPIST, "boris", "Борис Терапевт")
    await working_hours(stage, therapist_id)
    consultant, _ = await staff_token(stage.app, Role.CONSULTANT, "setup")
    patient = await patient_token(stage.app, ADULT_PHONE)
    me = await (await stage.app.client.get("/api/v1/me", headers=bearer(patient))).json()
    booked = []
    for starts in ("2026-01-15T10:00:00Z", "2026-01-15T10:30:00Z"):
        resp = await stage.app.client.post(
            "/api/v1/appointments",
            json={
                "patient_id": me["user_id"],
                "doctor_id": therapist_id,
                "starts_at": starts,
                "channel": "video",
                "notify_via": "phone",
            },
            headers=bearer(consultant),
        )
        assert resp.status == 201, await resp.text()
        booked.append((await resp.json())["appointment_id"])
    cancelled, missed = booked

    async with chromium(camera_file(tmp_path)) as browser:
        desk = await person(browser, DESK, "consultant")
        c = desk.page
        await login_staff(c, stage.url, "anna")
        await expect(c.locator("#live-state")).to_be_hidden(timeout=WAIT)
        rows = c.get_by_test_id("day-item")
        await expect(rows).to_have_count(2, timeout=WAIT)
        await expect(rows.first.get_by_test_id("informing")).to_have_attribute(
            "data-informing", "due"
        )

        # The patient cancels the first before its start.
        resp = await stage.app.client.post(
            f"/api/v1/appointments/{cancelled}/cancel", headers=bearer(patient)
        )
        assert resp.status == 200
        row = c.locator(f'[data-testid="day-item"][data-appointment-id="{cancelled}"]')
        await expect(row).to_have_attribute("data-state", "cancelled", timeout=WAIT)
        await expect(row.get_by_test_id("day-state")).to_have_text("отменена")

        # The second starts, the patient never comes: 15 minutes later it is a no-show.
        stage.app.clock.advance(timedelta(minutes=90))
        await stage.tick()
        stage.app.clock.advance(timedelta(minutes=16))
        assert (await stage.tick()).get("no_show") == 1
        row = c.locator(f'[data-testid="day-item"][data-appointment-id="{missed}"]')
        await expect(row).to_have_attribute("data-state", "no_show", timeout=WAIT)
        await expect(row.get_by_test_id("day-state")).to_have_text("не явился")
        await expect(c.get_by_test_id("queue-item")).to_have_count(0)
        await console_shots(desk, "console-day-marks")
        assert desk.errors == [], desk.errors


def _png() -> bytes:
    """A real 8x8 red PNG (the card sniffs uploads by content)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"  # noqa: E501


async def test_second_opinion_assigned_read_in_the_viewer_concluded_and_delivered(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-SECOND, R-DOCS-1, every role through its pages: the patient asks from the call with
    two documents, the consultant assigns (the due date counts 14 working days), the
    specialist opens both documents in the console's viewer (image and PDF from the
    authenticated fetch), writes and signs the conclusion, the consultant delivers it into
    the patient's chat, whose link opens the conclusion, and on the patient's request books
    the specialist from the same screen."""

    stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    specialist_id = await stage.add_staff(Role.SPECIALIST, "vera", "Вера Специалист")
    await working_hours(stage, specialist_id)

    async with chromium(camera_file(tmp_path)) as browser:
        consultant = await person(browser, DESK, "consultant")
        specialist = await person(browser, DESK, "specialist")
        patient = await person(browser, PHONE, "patient")
        c, sp, p = consultant.page, specialist.page, patient.page
        await login_staff(c, stage.url, "anna")
        await login_staff(sp, stage.url, "vera")
        await expect(c.locator("#live-state")).to_be_hidden(timeout=WAIT)

        # The patient calls (chat) and, talking to the consultant, asks from the call screen
        # with two documents uploaded there (the patient app's second-opinion screen).
        await login_patient(p, stage)
        await patient_reaches_home(p)
        await p.get_by_test_id("channel-chat").check()
        await p.get_by_test_id("start-urgent").click()
        item = c.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await item.get_by_test_id("accept").click()
        await screen_is(p, "call")
        await p.get_by_test_id("call-opinion").click()
        await screen_is(p, "opinions")
        xray, summary = tmp_path / "рентген.png", tmp_path / "выписка.pdf"
        xray.write_bytes(_png())
        summary.write_bytes(PDF)
        for number, document in enumerate((xray, summary), start=1):
            await p.get_by_test_id("opinion-upload").set_input_files(str(document))
            await expect(p.get_by_test_id("opinion-doc")).to_have_count(number, timeout=WAIT)
        for box in await p.get_by_test_id("opinion-doc").all():
            await box.check()
        await p.get_by_test_id("opinion-question").fill("Нужна ли операция?")
        await p.get_by_test_id("opinion-send").click()
        asked = p.get_by_test_id("opinion")
        await expect(asked).to_have_attribute("data-state", "requested", timeout=WAIT)
        case_id = str(await asked.get_attribute("data-second-opinion-id"))

        # The consultant sees it, opens it and assigns the specialist: due in 14 working days.
        await c.get_by_test_id("second-refresh").click()
        case = c.locator(f'[data-testid="second-item"][data-case-id="{case_id}"]')
        await expect(case).to_have_attribute("data-state", "requested", timeout=WAIT)
        await case.get_by_test_id("second-open").click()
        await expect(c.get_by_test_id("second-question")).to_have_text("Нужна ли операция?")
        await expect(
            c.get_by_test_id("second-documents").get_by_test_id("console-document")
        ).to_have_count(2)
        await c.get_by_test_id("second-specialist").select_option(label="Вера Специалист")
        await console_shots(consultant, "console-second-opinion")
        await c.get_by_test_id("second-assign").click()
        await expect(c.get_by_test_id("second-status")).to_have_text(
            "Пакет документов направлен специалисту", timeout=WAIT
        )
        await expect(case).to_have_attribute("data-state", "assigned", timeout=WAIT)
        due = stage.app.services.clock.now()  # Thursday 15 January 2026
        assert due.date().isoformat() == "2026-01-15"
        # 14 working days after Thu 15.01 (no holidays then): Wed 04.02.2026.
        await expect(case.get_by_test_id("second-due")).to_have_text("срок 04.02.2026")

        # The specialist reads both documents in the viewer and signs the conclusion.
        await sp.get_by_test_id("second-refresh").click()
        mine = sp.locator(f'[data-testid="second-item"][data-case-id="{case_id}"]')
        await mine.get_by_test_id("second-open").click(timeout=WAIT)
        docs = sp.get_by_test_id("second-documents").get_by_test_id("console-document")
        await expect(docs).to_have_count(2, timeout=WAIT)
        viewer = sp.get_by_test_id("viewer")
        await docs.filter(has_text="рентген").get_by_test_id("document-open").click()
        image = sp.get_by_test_id("viewer-image")
        await expect(image).to_be_visible(timeout=WAIT)
        assert await image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 8
        assert (await image.get_attribute("src") or "").startswith("blob:")
        await console_shots(specialist, "console-viewer-image")
        await sp.get_by_test_id("viewer-close").click()
        await expect(viewer).to_be_hidden()
        await docs.filter(has_text="выписка").get_by_test_id("document-open").click()
        frame = sp.get_by_test_id("viewer-pdf")
        await expect(frame).to_be_visible(timeout=WAIT)
        assert (await frame.get_attribute("src") or "").startswith("blob:")
        await sp.get_by_test_id("viewer-close").click()
        await sp.get_by_test_id("second-text").fill("Показаний к операции нет.")
        await sp.get_by_test_id("second-recommendations").fill("Наблюдение, ЛФК.")
        await console_shots(specialist, "console-second-conclusion")
        await sp.get_by_test_id("second-sign").click()
        await expect(sp.get_by_test_id("second-status")).to_have_text(
            "Заключение подписано", timeout=WAIT
        )

        # The reads were audited, as every document read is.
        audit = await (
            await stage.app.client.get(
                "/api/v1/audit",
                params={"object_type": "document"},
                headers=bearer((await staff_token(stage.app, Role.ADMIN, "admin"))[0]),
            )
        ).json()
        read = {
            e["object_id"]
            for e in audit["items"]
            if e["actor_role"] == "specialist" and e["action"] == "document_download"
        }
        assert len(read) == 2, audit

        # The consultant delivers: the patient gets the link in the chat.
        await c.get_by_test_id("second-refresh").click()
        await expect(case).to_have_attribute("data-state", "concluded", timeout=WAIT)
        await case.get_by_test_id("second-open").click()
        await c.get_by_test_id("second-deliver").click()
        await expect(c.get_by_test_id("second-status")).to_have_text(
            "Заключение передано пациенту в чат", timeout=WAIT
        )
        await expect(c.get_by_test_id("second-case")).to_have_attribute(
            "data-state", "delivered", timeout=WAIT
        )
        await expect(case).to_have_count(0)  # delivered: no longer an open request

        # The patient sees the package went to the specialist, then the link in the chat,
        # which opens the conclusion.
        await p.evaluate("location.hash = 'consultation'")  # back to the chat
        await screen_is(p, "call")
        link = p.get_by_test_id("chat-conclusion-link")
        await expect(link).to_have_attribute("href", re.compile(r"^/#/conclusions/"), timeout=WAIT)
        await link.click()
        await screen_is(p, "conclusion")
        await expect(p.get_by_test_id("conclusion-view")).to_contain_text(
            "Показаний к операции нет.", timeout=WAIT
        )

        # On the patient's request the consultant books the specialist from the same screen.
        await expect(c.get_by_test_id("second-slot")).to_contain_text("13:00", timeout=WAIT)
        await c.get_by_test_id("second-channel").select_option("video")
        await console_shots(consultant, "console-second-book")
        await c.get_by_test_id("second-book").click()
        await expect(c.get_by_test_id("second-status")).to_contain_text(
            "Записан(а) к специалисту", timeout=WAIT
        )
        await expect(c.get_by_test_id("second-book")).to_have_count(0, timeout=WAIT)
        day = c.get_by_test_id("day-item")
        await expect(day).to_have_count(1, timeout=WAIT)
        await expect(day).to_contain_text("Вера Специалист")
        for who in (consultant, specialist):
            assert who.errors == [], who.errors
