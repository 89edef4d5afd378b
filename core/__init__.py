"""Plain, Streamlit-free building blocks shared by every layer: settings, errors, result types,
the verdict and band vocabulary, identity keys, de-identification and image annotation.

Owns nothing stateful. May import only the standard library and numeric/imaging libraries
(numpy, Pillow, OpenCV); never another package of this app."""
