"""The call to Nector: the client, its aiohttp transport, and the shared deadline timer."""
