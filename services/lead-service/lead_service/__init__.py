"""Salesflow lead-service: leads, contacts, companies, activities, web-form intake, scoring, enrichment."""
