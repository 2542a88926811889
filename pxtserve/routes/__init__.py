"""One module per route kind; each turns a declaration into a RouteOperation."""
