"""The Chat API: OpenAI-compatible turns, SSE streaming, server-side sessions."""
