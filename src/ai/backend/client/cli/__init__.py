"""The user CLI, ``backend.ai actor | agent | job | tool | model | admin …``, built on the SDK
(:class:`ai.backend.client.AsyncSession`). One module per group; ``base`` holds the exit codes
and error handling every group shares, ``output`` the rendering (rich tables, ``--json``),
``params`` the parsing of what users type."""
