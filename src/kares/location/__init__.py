"""Location: ingestion from apps, trackers and watches; the live family map,
tracks, the timeline of stays and trips, driving events and places (policy 1.3)."""
