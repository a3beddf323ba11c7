"""Sync hello for our watchdog; ff/main_sync.py is the same for functions-framework."""


def handle(event, context):
    return "Hello, world!\n"
