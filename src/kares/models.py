"""Imports every domain's tables so the metadata is complete (migrations, tests)."""

from kares import jobs as jobs_models
from kares.accounts import models as accounts_models
from kares.db import Base
from kares.devices import models as devices_models
from kares.families import models as families_models
from kares.location import models as location_models
from kares.media import models as media_models
from kares.notify import models as notify_models
from kares.privacy import models as privacy_models
from kares.sos import models as sos_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "devices_models",
    "families_models",
    "jobs_models",
    "location_models",
    "media_models",
    "metadata",
    "notify_models",
    "privacy_models",
    "sos_models",
]
