"""addons."""
