"""Incentive programs (contests): definitions, scoring with anti-gaming guards, formats and standings,
badges and streaks, templates. Pure code: no I/O, time passed in."""
