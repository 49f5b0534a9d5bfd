"""The load: the HTTP client that submits jobs, libcurl under it, and the open-loop arrivals."""
