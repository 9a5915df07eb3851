"""Salesflow pipeline-service: pipelines, stages, goals, stage tasks, lead positions and history."""
