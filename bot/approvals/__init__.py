"""Approvals: production changes wait for N eligible people, bound to the plan they saw."""
