"""nova.exception, reduced to the class fjord's scheduler raises: with
allowed_remote_exmods=["nova.exception"], oslo.messaging re-raises a remote
NoValidHost as this class, exactly as it does for nova's own."""


class NoValidHost(Exception):
    pass
