"""The stack on this machine: its servers, its services, the processes they run in, the watchdog."""
