"""Salesflow metrics-service: read models and reports built only from events: funnel, win rate, forecast, coaching."""
