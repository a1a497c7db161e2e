"""Demo data sets, the article's CNN, and safe loading of any `.keras` image classifier."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes on CPU-only machines) drowns the CLIs' output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
