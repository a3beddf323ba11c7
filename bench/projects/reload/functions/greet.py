import os

VERSION = 0


def handle(event, context):
    return f"{os.environ['GREETING']} v{VERSION}\n"
