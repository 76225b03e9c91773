"""levels: calibrated sound levels, Fast-weighted statistics, acoustic indices and noise events."""
