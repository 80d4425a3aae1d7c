"""Doctor conclusions, the patient calendar (JSON and iCalendar), FHIR export, second opinions."""
