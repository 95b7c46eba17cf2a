"""Gateway: MCP server, jobs REST + SSE, KServe v2, job persistence."""
