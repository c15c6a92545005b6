"""Shared test setup: put ``src/`` on the path (EPyMARL-style imports) and use one torch thread."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO_ROOT, "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import torch  # noqa: E402

torch.set_num_threads(1)
