"""Diagnoses of alerts, one module per family of alerts; each builds its Result with
`handlers.incident.diagnosis` so every alert runbook reads alike."""
