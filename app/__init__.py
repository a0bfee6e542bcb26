"""The application: the command line, the stack and its embedded servers, and the tools
that talk to the API. It sits above the services (api, producer, consumer), which sit
above the core (gridlens)."""
