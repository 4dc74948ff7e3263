"""The table of requests that need a person (policy 5.1, 5.6, 5.8 and 8): a disputed
correction, an explanation beyond the automatic one, a complaint or feedback,
answered by staff within the policy's working days."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Encrypted, not_personal, personal, table_info

CATEGORY = "rights.requests"


class RightsRequest(Base):
    """One request, about one account (``account_id``), filed by that account or
    by one of its guardians (``filed_by``). Never deleted by its state: withdrawn,
    answered and rejected requests stay, so a repeat can be counted and staff can
    show what was answered. The free texts are encrypted at rest."""

    __tablename__ = "rights_requests"
    __table_args__ = (
        Index("ix_rights_requests_same", "account_id", "kind", "topic", "created_at"),
        Index("ix_rights_requests_status_due", "status", "due_on"),
        table_info(
            subject="account_id",
            also_about=("filed_by",),
            not_personal=("id",),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, info=personal(CATEGORY)
    )
    # a guardian filing for a dependant or a child; the account itself otherwise
    filed_by: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True, info=personal(CATEGORY)
    )
    # correction | explanation | complaint | feedback
    kind: Mapped[str] = mapped_column(String(16), info=personal(CATEGORY))
    # the catalog category the request is about (a correction names one)
    about: Mapped[str | None] = mapped_column(String(64), info=personal(CATEGORY))
    record: Mapped[str | None] = mapped_column(
        Encrypted("rights_requests.record"), info=personal(CATEGORY)
    )
    wrong: Mapped[str | None] = mapped_column(
        Encrypted("rights_requests.wrong"), info=personal(CATEGORY)
    )
    should_be: Mapped[str | None] = mapped_column(
        Encrypted("rights_requests.should_be"), info=personal(CATEGORY)
    )
    text: Mapped[str | None] = mapped_column(
        Encrypted("rights_requests.text"), info=personal(CATEGORY)
    )
    # what makes two requests "the same" (rights.staff.topic_of), as a keyed hash
    topic: Mapped[str] = mapped_column(String(64), info=personal(CATEGORY))
    lang: Mapped[str] = mapped_column(String(8), info=personal(CATEGORY))
    # open | answered | rejected | withdrawn
    status: Mapped[str] = mapped_column(String(16), info=personal(CATEGORY))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    # None while the working-day calendar of the year is not known (due_pending says why)
    due_on: Mapped[date | None] = mapped_column(Date, info=personal(CATEGORY))
    due_pending: Mapped[str | None] = mapped_column(
        String(255),
        info=not_personal("why no due date is known yet: a calendar year the library lacks"),
    )
    answer: Mapped[str | None] = mapped_column(
        Encrypted("rights_requests.answer"), info=personal(CATEGORY)
    )
    answered_by: Mapped[str | None] = mapped_column(
        String(64), info=not_personal("the operator who answered, not the account holder")
    )
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
