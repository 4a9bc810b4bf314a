"""Wire formats: each turns a ``Run`` (see ``server.usecases.run``) into its API's bodies."""
