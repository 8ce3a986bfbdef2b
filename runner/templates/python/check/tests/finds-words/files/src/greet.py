def greet(name):
    # FIXME: say goodbye too
    return f"hello, {name}"
