"""Automation: durable timers (stored steps that workers claim and run).

* :class:`Step` and :class:`StepStatus`: work stored to run at a due time, by the runner
  registered for its kind; :class:`RunReport` says what one run of the due work did;
* :func:`new_step`, :func:`is_claimable`, :func:`claim_step`, :func:`step_done`,
  :func:`step_failed` and :func:`retry_delay`: a step's life, as pure functions;
* :func:`check_payload`, :class:`Payload`, :func:`payload_to_json` and
  :func:`payload_from_json`: what a step's payload may be (a JSON object) and its text.
"""

from crmkit.automation._steps import (
    MAX_ERROR_CHARS,
    MAX_PAYLOAD_BYTES,
    Payload,
    RunReport,
    Step,
    StepStatus,
    check_payload,
    claim_step,
    is_claimable,
    new_step,
    payload_from_json,
    payload_to_json,
    retry_delay,
    step_done,
    step_failed,
)

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_PAYLOAD_BYTES",
    "Payload",
    "RunReport",
    "Step",
    "StepStatus",
    "check_payload",
    "claim_step",
    "is_claimable",
    "new_step",
    "payload_from_json",
    "payload_to_json",
    "retry_delay",
    "step_done",
    "step_failed",
]
