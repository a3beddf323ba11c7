"""A numpy function: numpy imported at module level, a small array per call."""

import numpy as np


def handle(event, context):
    return f"{int(np.arange(10).sum())}\n"
