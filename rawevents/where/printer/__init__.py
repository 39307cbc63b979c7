"""SQL printers for `where`: the generic compiler (base) and one printer per storage backend."""
