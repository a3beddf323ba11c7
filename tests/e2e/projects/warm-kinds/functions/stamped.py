import stamp


def handle(event, context):
    """When and as whom the requirement's module-level code ran."""
    return {"imported_at": stamp.IMPORTED_AT, "imported_by": stamp.IMPORTED_BY}
