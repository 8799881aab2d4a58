"""What the browser test scripts share: logging, checks that say what passed, the exit status."""

import functools

log = functools.partial(print, flush=True)


class CheckFailed(Exception):
    pass


def check(cond, msg):
    """Raises CheckFailed(msg) unless `cond`; logs `ok: msg` otherwise."""
    if not cond:
        raise CheckFailed(msg)
    log(f"  ok: {msg}")


def outcome(ok):
    """Logs the verdict; returns the process exit status."""
    log("ok" if ok else "FAILED")
    return 0 if ok else 1
