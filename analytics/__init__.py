"""What the stored verdicts say: agreement statistics and the exports (CSV, JSON, the HTML case
report). May import ``core``, ``inference``, ``xai`` and ``storage``; never Streamlit, ui or cli."""
