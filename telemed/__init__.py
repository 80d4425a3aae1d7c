"""telemed: telemedicine sessions for insurers' patients, consultants and duty doctors."""

__version__ = "0.1.0"
