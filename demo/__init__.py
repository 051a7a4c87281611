"""The demo: local mail servers with demo mailboxes (`demo.mailservers`), demo data
(`manage.py seed_demo`) and `manage.py demo`, which runs the whole console with them. Demo code,
apart from the product: nothing in `jobs`, `accounts` or `core` imports it, and a deployment
never needs it.
"""
