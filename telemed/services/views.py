"""The domain's view of a stored consultation row (telemed/consultation.py decides on views,
never on ORM rows)."""

from __future__ import annotations

from telemed.consultation import Channel, ConsultationView, Kind, State
from telemed.models import Consultation
from telemed.roles import Role


def view_of(row: Consultation) -> ConsultationView:
    return ConsultationView(
        id=row.id,
        state=State(row.state),
        kind=Kind(row.kind),
        channel=Channel(row.channel),
        patient_id=row.patient_id,
        consultant_id=row.consultant_id,
        doctor_id=row.doctor_id,
        queue_role=Role(row.queue_role) if row.queue_role else None,
        target_doctor_id=row.target_doctor_id,
    )
