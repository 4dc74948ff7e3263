"""Health information from phones and watches (docs/HEALTH.md)."""
