"""The dashboard: one static page and server-rendered, escaped HTML fragments behind the API keys."""
