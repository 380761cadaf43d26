"""A stand-in for nova's package: only what fjord's interop tests import (nova.exception)."""
