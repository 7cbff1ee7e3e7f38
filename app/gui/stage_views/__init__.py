"""The window side of the live stages: one small presenter per stage's record.

`ResultPresenter` keeps the basics (grid, input, unit map, texts) and hands each frame's
sub-records to these through its `{record type: handler}` map; a handler is called with
None when its stage sent nothing this frame, so it can clear what it drew. A new live
feature adds a module here and a row in that map. They talk to panes through the panes'
methods only.
"""
