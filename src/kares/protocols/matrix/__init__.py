"""The subset of the Matrix client-server API (v3) that lets a Matrix client chat
in its Kares conversations (issue 14). A wire format over the messaging domain:
no domain imports it."""
