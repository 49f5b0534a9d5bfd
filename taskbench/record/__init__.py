"""What a run leaves on disk: its settings, its raw results, its provenance, their JSON Schema."""
