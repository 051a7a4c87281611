"""Execution: what runs jobs. The django-q2 entry (worker), the brokers, the action registry and
the built-in actions. It changes jobs only through jobs.services."""
