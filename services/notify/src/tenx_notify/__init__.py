"""Notification preferences, email, the in-app feed and webhooks."""
