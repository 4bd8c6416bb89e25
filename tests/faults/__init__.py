"""The standing fault suite: each test against the real daemon or real peers."""
