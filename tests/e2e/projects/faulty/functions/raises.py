def handle(event, context):
    secret = "do-not-leak-this"
    raise RuntimeError(f"something broke with {secret}")
