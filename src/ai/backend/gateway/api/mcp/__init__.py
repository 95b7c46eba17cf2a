"""MCP Streamable HTTP at ``/mcp``, both eras (DESIGN.md §5; reference/protocols.md §4).

Layers, each importing only those above it in this list:

| module | what |
|---|---|
| ``protocol`` | JSON-RPC messages, MCP revisions, error codes, SSE framing (pure) |
| ``envelope`` | era of a request, the modern header/``_meta`` ladder, Origin check (pure) |
| ``results`` | tool descriptors, ``CallToolResult`` of a job, progress mapping (pure) |
| ``exchange`` | one request as handlers see it, JSON and SSE replies, the endpoint's state |
| ``calls`` | ``tools/call``: jobs, waiting, streaming progress, cancellation |
| ``sessions`` | legacy sessions: ``initialize``, session checks, ``DELETE``, cancel notices |
| ``handlers`` | the aiohttp handlers and method tables; :func:`add_mcp_routes` |
"""

from .exchange import MCP_STATE_KEY
from .handlers import add_mcp_routes, mcp_origin_middleware

__all__ = ["MCP_STATE_KEY", "add_mcp_routes", "mcp_origin_middleware"]
