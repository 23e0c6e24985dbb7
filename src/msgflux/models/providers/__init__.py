"""Built-in providers; importing this package registers them."""
