"""Reference data shipped with gpde (read with importlib.resources; see README.md here)."""
