"""APScheduler wiring: wakes the code that acts on deadlines kept in database rows."""
