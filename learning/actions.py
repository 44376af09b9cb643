"""What the learning loop does to data, by verb: the one place admin actions, commands and tasks call.

- ``learning.turns``: log a turn, bring logs up to date, confirm a turn's outcome, purge expired logs;
- ``learning.privacy``: a customer's export and erasure;
- ``learning.versions``: the learned phrasings of a routing version, promotion and rollback;
- ``learning.jobs``: asking for a retraining job.
Tasks import these; none of them imports ``learning.tasks``.
"""

from __future__ import annotations

from learning.jobs import request_retraining
from learning.privacy import Customer, Erasure, LearningError, erase_customer, export_customer
from learning.turns import (
    confirm_turn,
    customer_hash,
    log_reply,
    purge_expired_logs,
    refresh_turn,
    refresh_turns,
    split_for,
)
from learning.versions import (
    LEARNED_ORIGIN,
    RetrainingRunning,
    VersionUnavailable,
    activate_version,
    check_available,
    learned_examples_of,
    needs_new_index,
    sync_learned_examples,
)

__all__ = [
    "LEARNED_ORIGIN",
    "Customer",
    "Erasure",
    "LearningError",
    "RetrainingRunning",
    "VersionUnavailable",
    "activate_version",
    "check_available",
    "confirm_turn",
    "customer_hash",
    "erase_customer",
    "export_customer",
    "learned_examples_of",
    "log_reply",
    "needs_new_index",
    "purge_expired_logs",
    "refresh_turn",
    "refresh_turns",
    "request_retraining",
    "split_for",
    "sync_learned_examples",
]
