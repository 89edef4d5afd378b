import streamlit as st

from tests.e2e.stale_fragment_app.ticker import ticker

st.title("Ticking page")


@st.fragment
def ticking() -> None:
    st.write(f"ticks seen: {ticker(key='ticker', default=0)}")


ticking()
