"""The read API's queries (issue 13): conversations, a conversation's messages, a contact.

Organization-scoped: every query takes the caller's organization id and never returns
another organization's rows (an id of another organization reads as not found).
"""
