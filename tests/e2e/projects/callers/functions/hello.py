def handle(event, context):
    if event.query.get("cookie"):
        return "<script>alert(1)</script>", 200, {
            "Content-Type": "text/html",
            "Set-Cookie": "stolen=1",
        }
    return "hello\n"
