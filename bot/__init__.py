"""Blinatumomab symptom-triage assistant."""
