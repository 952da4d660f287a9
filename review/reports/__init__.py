"""Reports on a project: the dashboard's queries (funnel, distributions, agreement, people and
LLM usage), the agreement statistics, and the server-side SVG charts and their figures. The
release card reads the same figures."""
