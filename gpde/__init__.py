"""gpde engine."""
