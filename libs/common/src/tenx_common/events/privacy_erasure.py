"""Events of the ``privacy.erasure`` topic, keyed by deletion id: the replies
of the account-deletion saga.

The protocol: auth publishes AccountDeletionRequested (on ``auth.users``);
every service that holds personal data erases the user's data in its
consumer's transaction and, in that same transaction, stages one
AccountDataErased naming itself. Auth waits for a reply from each service in
its ``deletion_participants`` setting and re-publishes the request to those
that have not answered in time; erasing twice is harmless, a second reply is
ignored. A new service joins with one handler and one entry in that list.
"""

from typing import ClassVar
from uuid import UUID

from tenx_common.events import Event

TOPIC = "privacy.erasure"


class AccountDataErased(Event):
    TOPIC: ClassVar[str] = TOPIC
    TYPE: ClassVar[str] = "tenx.privacy.account_data_erased.v1"
    deletion_id: UUID
    user_id: UUID
    service: str

    def aggregate_id(self) -> str:
        return str(self.deletion_id)
