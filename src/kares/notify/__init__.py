"""Notifications: the in-app inbox and outbound channels (SMS now; push in step 3)."""
