"""Operator actions on plans: resume, skip, retry, cancel, halt.

:mod:`.online` is what ``World`` calls: it checks the request and sends it to this world's
engine when a plan runs (or can run) here. :mod:`.offline` is the path for a plan no world
runs (planned, paused, or released): the change is made in the database, in one transaction.
:mod:`.skip` computes what a skip takes with it and calls the action's ``on_skip`` veto.
"""
