"""Wire DTOs shared by every package (DESIGN.md §4). Unknown keys are rejected everywhere.

Import from the topic modules (``dto.envelope``, ``dto.actor_spec``, ``dto.tool_spec``,
``dto.job_event``, ``dto.agent``); this package re-exports nothing so that a process that
needs only envelopes does not pay for importing JSON Schema and YAML.
"""
