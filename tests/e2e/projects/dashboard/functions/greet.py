import time


def handle(event, context):
    time.sleep(int(event.query.get("ms", "0")) / 1000)
    return {
        "greeting": f"Hello, {event.query.get('name', 'world')}!",
        "method": event.method,
        "body": event.text(),
        "authorization": event.headers.get("authorization"),
    }
