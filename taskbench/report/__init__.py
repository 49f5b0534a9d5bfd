"""The reports: renderers of the typed analysis (`markdown`, `html`, `charts`, `compare`) that return text or
figures, built from shared `content` blocks; `files` writes every file."""
