"""The window's features, one module each: what the window does for it, together.

A feature module holds its pane wiring (`connect`), its rows of the action table (`rows`:
each with the callable it triggers) and what it does with each message and job that comes
back (`handlers`: `{message type: handler}`, and `{request type: handler}` for the steps
and end of its jobs). The window builds the features, joins their rows into one table
(`actions.assemble`) and their handlers into the event presenter; features never import
each other (an import-linter contract): what one needs of another goes through the view
model, the panes or the backend.
"""
