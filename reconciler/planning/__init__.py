"""Pure planning: desired + record + observed -> plan. No I/O anywhere in here."""
