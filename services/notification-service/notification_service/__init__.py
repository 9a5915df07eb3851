"""Salesflow notification-service: email templates and sequences, Mailchimp sync, reminders and rep milestones."""
