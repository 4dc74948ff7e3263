"""Uploaded images (avatars now; group photos in step 3): checked, re-encoded, metadata stripped."""
