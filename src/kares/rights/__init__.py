"""Users' rights (policy 5.1-5.8): export, correction, deletion, the staff queue.

The engine walks the column declarations (``kares.fields``) of every table, so
no domain writes its own export or delete code. Domains and protocols register
richer formats and the hooks a deletion needs; this package never names them.
"""
