"""The care team's side: escalation records and their outbox (store, recorder, notifier), the accounts
and audit log, and the review web app (app, templates, static). Imports no Rasa."""
