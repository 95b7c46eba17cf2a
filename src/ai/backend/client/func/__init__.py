"""One module per resource of the platform; :class:`~ai.backend.client.session.AsyncSession`
exposes them as ``session.actors``, ``.agents``, ``.jobs``, ``.tools``, ``.models``,
``.admin``."""
