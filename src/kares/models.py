"""Imports every domain's tables so the metadata is complete (migrations, tests)."""

from kares.accounts import models as accounts_models
from kares.db import Base
from kares.media import models as media_models
from kares.notify import models as notify_models

metadata = Base.metadata

__all__ = ["accounts_models", "media_models", "metadata", "notify_models"]
