"""Generation's REST resources (Django REST framework): LLM endpoints, runs, LLM calls."""
