"""Retention (policy 4.1): every ``retention`` in the catalog, enforced by a job."""
