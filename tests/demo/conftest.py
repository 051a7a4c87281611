"""The demo's mail servers are tested as the IMAP sync is: with the same short timeouts."""

from tests.imap.conftest import imap_settings  # noqa: F401
