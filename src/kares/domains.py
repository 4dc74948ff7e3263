"""Every domain of Kares in one place: the entry points' view of the house.

Importing this module registers what each domain gives the layers below it:
its tables (``metadata``: migrations, tests and the privacy core walk them),
its job handlers (``@jobs.handler`` in its ``jobs.py``) and the hooks the
privacy core calls (registered by each domain's ``service.py``). ``app`` and
``cli`` import it; no domain and no plumbing module does: they never look
the domains up, the domains register with them.
"""

from kares import jobs as jobs_models
from kares.accounts import models as accounts_models
from kares.accounts import service as accounts_service
from kares.calls import models as calls_models
from kares.calls import service as calls_service
from kares.db import Base
from kares.devices import models as devices_models
from kares.devices import service as devices_service
from kares.families import models as families_models
from kares.families import service as families_service
from kares.health import alerts as health_alerts
from kares.health import models as health_models
from kares.location import jobs as location_jobs
from kares.location import models as location_models
from kares.location import service as location_service
from kares.media import models as media_models
from kares.messaging import jobs as messaging_jobs
from kares.messaging import models as messaging_models
from kares.messaging import service as messaging_service
from kares.notify import jobs as notify_jobs
from kares.notify import models as notify_models
from kares.notify import revision as notify_revision
from kares.notify import service as notify_service
from kares.privacy import models as privacy_models
from kares.protocols import applehealth_import as protocols_applehealth_import
from kares.protocols import healthfhir as protocols_healthfhir
from kares.protocols import schedule_archive as protocols_schedule_archive
from kares.protocols import trackfiles as protocols_trackfiles
from kares.protocols.caldav import models as caldav_models
from kares.protocols.matrix import models as matrix_models
from kares.retention import jobs as retention_jobs
from kares.retention import models as retention_models
from kares.rights import audit as rights_audit
from kares.rights import erase as rights_erase
from kares.rights import export as rights_export
from kares.rights import export_jobs as rights_export_jobs
from kares.rights import register as rights_register
from kares.rights import staff_jobs as rights_staff_jobs
from kares.rights import staff_models as rights_staff_models
from kares.schedule import models as schedule_models
from kares.schedule import reminders as schedule_reminders
from kares.schedule import service as schedule_service
from kares.sos import jobs as sos_jobs
from kares.sos import models as sos_models
from kares.sos import service as sos_service
from kares.stats import models as stats_models
from kares.watches import jobs as watches_jobs
from kares.watches import models as watches_models
from kares.watches import service as watches_service

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "accounts_service",
    "caldav_models",
    "calls_models",
    "calls_service",
    "devices_models",
    "devices_service",
    "families_models",
    "families_service",
    "health_alerts",
    "health_models",
    "jobs_models",
    "location_jobs",
    "location_models",
    "location_service",
    "matrix_models",
    "media_models",
    "messaging_jobs",
    "messaging_models",
    "messaging_service",
    "metadata",
    "notify_jobs",
    "notify_models",
    "notify_revision",
    "notify_service",
    "privacy_models",
    "protocols_applehealth_import",
    "protocols_healthfhir",
    "protocols_schedule_archive",
    "protocols_trackfiles",
    "retention_jobs",
    "retention_models",
    "rights_audit",
    "rights_erase",
    "rights_export",
    "rights_export_jobs",
    "rights_register",
    "rights_staff_jobs",
    "rights_staff_models",
    "schedule_models",
    "schedule_reminders",
    "schedule_service",
    "sos_jobs",
    "sos_models",
    "sos_service",
    "stats_models",
    "watches_jobs",
    "watches_models",
    "watches_service",
]
