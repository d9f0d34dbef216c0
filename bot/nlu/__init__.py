"""Rasa NLU graph components that wrap the triage core."""
