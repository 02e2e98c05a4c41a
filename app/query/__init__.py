"""Questions analysts ask of the flows: filters in nfdump's syntax (``filter``) and aggregates such as top
talkers and traffic over time (``top``). Pure code."""
