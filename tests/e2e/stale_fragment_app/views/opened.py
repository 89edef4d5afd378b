import time

import streamlit as st

st.session_state.setdefault("slow_runs", 0)
st.session_state.slow_runs += 1
st.title("Slow page")
time.sleep(0.5)
st.write(f"slow page drawn, run {st.session_state.slow_runs}")
