"""`soundscape notify`: Apprise notifications for noise events and devices in trouble."""
