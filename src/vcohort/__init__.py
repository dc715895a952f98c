"""vcohort: virtual cohorts of cancer patients under combination therapy (CSC–immune QSP model)."""

__version__ = "0.1.0"
