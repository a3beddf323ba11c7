"""Sync hello for functions-framework's default mode (a Flask request in, a str out)."""


def handle(request):
    return "Hello, world!\n"
