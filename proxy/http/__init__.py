"""HTTP plumbing: the ASGI request view, CORS, answers and error rendering, paths, Starlette
glue, and the server protocol with its own limits."""
