import module_that_is_not_installed  # noqa: F401


def handle(event, context):
    return "unreachable"
