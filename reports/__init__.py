"""The analysis layer: SQL analyses, charts and the HTML report over a run database."""
