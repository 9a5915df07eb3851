"""The reports: each answer made from the rows its SQL computes over the read models (never by looping over raw
events), one module per family of reports, as adapters/reports/ has one per family of statements."""
