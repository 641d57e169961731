"""The engine: spec -> step graph -> tasks -> archive."""

import os

# apax imports tensorflow, whose C++ start-up chatter would drown the progress bars
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")  # apax's per-batch progress bars, likewise
