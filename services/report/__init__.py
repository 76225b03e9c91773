"""Noise reports: Lday, Levening, Lnight, Lden, hourly LAeq and event counts per device-day."""
