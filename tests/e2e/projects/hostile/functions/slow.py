"""Says (in its log) which call it runs, then takes two seconds."""

import time


def handle(event, context):
    print(f"running {context.call_id}", flush=True)
    time.sleep(2)
    return "done\n"
