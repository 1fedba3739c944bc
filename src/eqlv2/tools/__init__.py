"""One module per ``eqlv2`` verb: a library function, ``add_parser`` and the command that joins them."""
