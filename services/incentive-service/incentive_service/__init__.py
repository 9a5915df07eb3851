"""Salesflow incentive-service: commission plans as data, statements with every amount explained, payouts."""
