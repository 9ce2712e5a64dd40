"""The lifecycle: pipelines and their state machine, contact lifecycle stages, lead
capture and conversion, tickets with SLAs, tasks and the contact timeline.

Pure domain logic over :mod:`crmkit.models`: functions take entities and return new
entities plus the events to store; :mod:`crmkit.crm` runs them against a store.
"""

from crmkit.lifecycle._moved import Moved, Unmet

__all__ = ["Moved", "Unmet"]
