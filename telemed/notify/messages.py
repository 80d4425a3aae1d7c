"""What a message to a patient says, by kind: a title, a short line and where to go.

Pure: the same words for the push notification, its SMS fallback and the in-app list.
Never medical text (no complaint, finding or conclusion): a phone's lock screen shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Europe/Moscow"
REMINDER_TEXT = "Напоминание: консультация врача в {time}. Войдите в приложение за несколько минут."
ROLE_NAMES_RU = {
    "therapist": "терапевт",
    "paediatrician": "педиатр",
    "specialist": "врач-специалист",
    "psychologist": "психолог",
}


@dataclass(frozen=True)
class Composed:
    """A message as the patient sees it; `url` is a screen of the patient app."""

    title: str
    text: str
    url: str


def _local(iso: object, zone: str | None) -> datetime:
    return datetime.fromisoformat(str(iso)).astimezone(ZoneInfo(zone or DEFAULT_ZONE))


def booking_text(starts_at: datetime, zone: str, doctor_name: str, doctor_role: str) -> str:
    """What the patient is told of a booking (R-SCH-1): the doctor, the date, the time and the
    time zone, in the patient's zone (R-CAL-1). Pure; the chat and the push/SMS use it."""
    local = starts_at.astimezone(ZoneInfo(zone))
    role = ROLE_NAMES_RU.get(doctor_role, doctor_role)
    return (
        f"Вы записаны на телемедицинскую консультацию: {doctor_name} ({role}), "
        f"{local:%d.%m.%Y} в {local:%H:%M} по времени {zone}. "
        "В назначенное время войдите в приложение и ожидайте соединения с консультантом."
    )


def appointment_url(payload: dict[str, Any]) -> str:
    return f"/#booking/{payload.get('appointment_id', '')}"


def compose(kind: str, payload: dict[str, Any], zone: str | None) -> Composed:
    """The words of one message, with times in the patient's time zone (R-CAL-1)."""
    if kind == "reminder":  # R-REMIND-1
        time = _local(payload["starts_at"], zone).strftime("%H:%M")
        return Composed(
            "Скоро консультация", REMINDER_TEXT.format(time=time), appointment_url(payload)
        )
    if kind == "appointment_booked":  # R-SCH-1
        text = booking_text(
            datetime.fromisoformat(str(payload["starts_at"])),
            zone or DEFAULT_ZONE,
            str(payload.get("doctor_name", "")),
            str(payload.get("doctor_role", "")),
        )
        return Composed("Вы записаны на консультацию", text, appointment_url(payload))
    if kind == "appointment_cancelled":
        local = _local(payload["starts_at"], zone)
        return Composed(
            "Запись отменена",
            f"Клиника отменила вашу запись на {local:%d.%m.%Y %H:%M}. "
            "Медконсультант поможет выбрать другое время.",
            appointment_url(payload),
        )
    if kind == "consultation_open":  # R-SCH-3
        return Composed(
            "Консультация начинается",
            "Войдите в приложение и ожидайте соединения с медконсультантом.",
            "/#consultation",
        )
    if kind == "doctor_calling":
        return Composed(
            "Вас ждут на консультации",
            "Вернитесь в приложение: с вами хотят соединиться.",
            "/#consultation",
        )
    if kind == "second_opinion_ready":  # R-SECOND
        return Composed(
            "Второе мнение готово", "Заключение врача можно посмотреть в приложении.", "/#records"
        )
    return Composed("Телемедицина", "Новое уведомление в приложении телемедицины.", "/#home")
