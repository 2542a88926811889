"""The route kinds: one module each (its declaration, how it is built, how it runs); see kinds.py."""
