def handle(event, context):
    answer = {"timeout_left": context.remaining() > 3600}
    return answer  # the test sets its breakpoint here
