"""Plain, Streamlit-free building blocks shared by every layer."""
