"""Salesflow assignment-service: reps, teams, territories, routing rules and explainable assignment decisions."""
