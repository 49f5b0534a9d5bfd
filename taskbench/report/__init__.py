"""Reports, rendered from saved JSON only: Markdown, charts and HTML."""
